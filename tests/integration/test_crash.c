/* The crash test: a few hundred order sagas with business failures,
 * transient errors (participants answer `retry` or sleep past the timeout
 * at random), while sagad is killed with SIGKILL and restarted several
 * times, a participant is killed mid-handler (its log must end inside
 * one), and the Kafka broker and PostgreSQL are restarted once each when
 * the test owns them (SAGA_SERVICES_OWN_KAFKA / SAGA_SERVICES_OWN_PG = 1,
 * set by scripts/with-services; otherwise it says SKIPPED). Afterwards
 * every saga must have ended, the participants' business state must be
 * exactly what the final statuses imply (no double effect, no leaked
 * reservation), and retries and absorbed duplicates must have happened.
 *
 * Alongside, carts (crash_sagas/crash_cart.json): a fan-out over twelve
 * lines, then a wait for a signal, through the same kills and restarts —
 * some sent their signal before they wait, the others wait through the
 * kills; every line reserved exactly once for a cart that completed,
 * none left for one that was undone.
 *
 * Size: SAGA_CRASH_SAGAS (default 240) sagas in SAGA_CRASH_WAVES (4) waves,
 * SAGA_CRASH_CARTS (30) carts. */
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
#include <uuid.h>

#include "harness.h"
#include "order_workload.h"
#include "saga_machine.h"
#include "saga_store.h"

enum { PAYMENT = OW_PAYMENT, NSVC = OW_NSVC };

static PGconn *db;
static char *prefix;
static it_proc svc[NSVC], sagad;
static int sagad_starts, svc_starts[NSVC];
static int kills, participant_kills, broker_restarts, pg_restarts;
static char killed_log[512]; /* the log of the participant killed mid-handler */
static saga_defs *defs;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int env_int(const char *name, int dflt)
{
    const char *v = getenv(name);
    return v && atoi(v) > 0 ? atoi(v) : dflt;
}

static void start_service(int i)
{
    ow_start_service(&svc[i], i, "crash", ++svc_starts[i]);
}

static void start_sagad(void)
{
    char name[64];
    /* The injected failures open breakers now and then (a probe that fails
     * doubles the wait): a short cool-down keeps them from outlasting the
     * test, which is about losing nothing, not about the breaker. */
    const char *args[] = {"--definitions", "tests/integration/crash_sagas",
                          "--breaker-cooldown", "2s", NULL};
    snprintf(name, sizeof name, "crash-sagad-%d", ++sagad_starts);
    assert_int_equal(it_spawn(&sagad, name, "sagad", args), 0);
    assert_int_equal(it_wait_log(&sagad, "sagad running", 60000), 0);
}

static int setup(void **state)
{
    (void)state;
    /* No static membership here (SAGA_INSTANCE_ID): after a broker restart
     * librdkafka 2.0 can be fenced for good (confluent-kafka-go#494); a
     * crashed sagad's partitions then move on after the session timeout. */
    if (ow_setup("crash", &db, &prefix) != 0)
        return -1;
    /* Transient trouble in every participant. */
    /* "handler begin/end" lines: the test checks its kill landed in one. */
    setenv("SAGA_EXAMPLE_LOG_HANDLERS", "1", 1);
    setenv("SAGA_EXAMPLE_FAIL_RATE", "0.08", 1);
    setenv("SAGA_EXAMPLE_SLOW_RATE", "0.02", 1);
    setenv("SAGA_EXAMPLE_SLOW_MS", "3500", 1);
    for (int i = 0; i < NSVC; i++)
        start_service(i);
    ow_seed(db);
    start_sagad();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ow_stop_all(&sagad, 1);
    ow_stop_all(svc, NSVC);
    saga_defs_free(defs);
    PQfinish(db);
    free(prefix);
    return 0;
}

/* ---- carts: fan-out and a wait for a signal ---- */

#define CART_LINES         12
#define CART_LINES_TEXT    "12"
#define CART_ATTEMPTS_TEXT "12" /* retry.max_attempts in crash_cart.json */

/* n carts by start request (sagad takes them); cart g's line 5 is an
 * unknown product when g % 7 == 3 (it is undone before it waits). */
static void start_carts(int n)
{
    char sql[1200];
    snprintf(sql, sizeof sql,
             "INSERT INTO saga.start_request (id, name, input, idempotency_key)"
             " SELECT gen_random_uuid(), 'crash_cart', jsonb_build_object('order_id',"
             " 'cart-' || g, 'lines', (SELECT jsonb_agg(jsonb_build_object('sku',"
             " CASE WHEN g %% 7 = 3 AND l = 5 THEN 'cart-nope' ELSE 'cart-line' END,"
             " 'quantity', 1)) FROM generate_series(0, %d) l)), 'crashcart-' || g"
             " FROM generate_series(1, %d) g",
             CART_LINES - 1, n);
    it_exec(db,
            "INSERT INTO inventory.stock (sku, available) VALUES ('cart-line', 100000)"
            " ON CONFLICT (sku) DO UPDATE SET available = EXCLUDED.available;"
            "DELETE FROM inventory.line_reservations");
    it_exec(db, sql);
}

/* The signal go to the carts that have a saga and none yet: those with
 * only == 0 before they wait (g % 3 == 0), else every one waiting. Odd
 * carts get a failing verdict. Returns how many were sent. */
static long long signal_carts(int early)
{
    char sql[1400];
    snprintf(
        sql, sizeof sql,
        "WITH c AS (SELECT s.id, substr(s.idempotency_key, 11)::int AS g"
        "  FROM saga.saga s WHERE s.name = 'crash_cart'"
        "  AND NOT EXISTS (SELECT 1 FROM saga.saga_signal x WHERE x.saga_id = s.id)"
        "  AND %s),"
        " i AS (INSERT INTO saga.saga_signal (saga_id, name, signal_id, failed, reason)"
        "  SELECT id, 'go', 'go-' || g, g %% 2 = 1,"
        "  CASE WHEN g %% 2 = 1 THEN 'the customer cancelled' END FROM c"
        "  ON CONFLICT DO NOTHING RETURNING 1)"
        " SELECT count(*) FROM i",
        early ? "substr(s.idempotency_key, 11)::int % 3 = 0 AND s.status = 'running' AND"
                " NOT EXISTS (SELECT 1 FROM saga.saga_step st WHERE st.saga_id = s.id"
                " AND st.name = 'await_go' AND st.status = 'dispatched')"
              : "EXISTS (SELECT 1 FROM saga.saga_step st WHERE st.saga_id = s.id"
                " AND st.name = 'await_go' AND st.status = 'dispatched')");
    return it_int(db, sql, 0, NULL);
}

/* The carts as c (id, status, g), and the status each must have: undone
 * when a line is an unknown product or the verdict fails, and also when a
 * line was given up after all its attempts (the kills can leave replies
 * unheard longer than the retries last: crash_cart.json); else completed. */
#define CARTS                                                                            \
    "(SELECT s.id, s.status, substr(s.idempotency_key, 11)::int AS g FROM saga.saga s"   \
    " WHERE s.name = 'crash_cart') c"
#define CART_GAVE_UP                                                                     \
    "EXISTS (SELECT 1 FROM saga.saga_event e WHERE e.saga_id = c.id AND e.step = 0"      \
    " AND e.kind = 'step_outcome_unknown' AND e.attempt >= " CART_ATTEMPTS_TEXT ")"
#define CART_WANT                                                                        \
    "CASE WHEN c.g % 7 = 3 OR c.g % 2 = 1 OR " CART_GAVE_UP " THEN 'compensated'"        \
    " ELSE 'completed' END"

/* On a failure: each cart whose status is not the one it must have, with
 * its history past the routine events, so that a rare failure can be read
 * from the CI log alone. */
static void print_carts(void)
{
    char *report = it_value(
        db,
        "SELECT string_agg(format('cart-%s %s: %s, expected %s; history:%s', c.g, c.id,"
        " c.status, " CART_WANT
        ", (SELECT string_agg(format(' %s %s step %s attempt %s %s',"
        " to_char(e.at, 'HH24:MI:SS.MS'), e.kind, e.step, e.attempt,"
        " left(coalesce(e.detail::text, ''), 160)), ';' ORDER BY e.id)"
        " FROM saga.saga_event e WHERE e.saga_id = c.id AND e.kind NOT IN"
        " ('step_dispatched', 'step_succeeded', 'compensation_dispatched',"
        " 'retry_scheduled', 'step_held'))),"
        " E'\\n' ORDER BY c.g) FROM " CARTS " WHERE c.status <> " CART_WANT,
        0, NULL);
    print_message("%s\n", report != NULL ? report : "(no report)");
    free(report);
}

/* Every cart ended as its line and verdict say, its lines reserved once
 * each when it completed and none left when it was undone. */
static void check_carts(int n)
{
    long long bad, stock, completed, gave_up;
    for (int waited = 0; waited < 300; waited++) {
        struct timespec ts = {1, 0};
        if (signal_carts(0) == 0 &&
            it_int(db,
                   "SELECT count(*) FROM saga.saga WHERE name = 'crash_cart'"
                   " AND status IN ('running', 'compensating')",
                   0, NULL) == 0)
            break;
        nanosleep(&ts, NULL);
    }
    assert_int_equal(
        it_int(db, "SELECT count(*) FROM saga.saga WHERE name = 'crash_cart'", 0, NULL),
        n);
    /* The outcome each cart must have. */
    bad = it_int(db, "SELECT count(*) FROM " CARTS " WHERE c.status <> " CART_WANT, 0,
                 NULL);
    if (bad != 0) {
        print_carts();
        fail_msg("%lld carts ended otherwise than their lines and verdicts say", bad);
    }
    gave_up =
        it_int(db,
               "SELECT count(*) FROM " CARTS " WHERE NOT (c.g % 7 = 3 OR c.g % 2 = 1)"
               " AND " CART_GAVE_UP,
               0, NULL);
    bad = it_int(db,
                 "SELECT count(*) FROM saga.saga s WHERE s.name = 'crash_cart' AND"
                 " (SELECT count(*) FROM inventory.line_reservations r WHERE r.saga_id ="
                 "  s.id AND r.status = 'reserved') <> CASE WHEN s.status = 'completed'"
                 "  THEN " CART_LINES_TEXT " ELSE 0 END",
                 0, NULL);
    if (bad != 0)
        fail_msg("%lld carts whose reserved lines are not what their status says", bad);
    assert_int_equal(it_int(db,
                            "SELECT count(*) FROM saga.saga_element e JOIN saga.saga s"
                            " ON s.id = e.saga_id WHERE s.name = 'crash_cart'"
                            " AND e.status IN ('dispatched', 'compensating')",
                            0, NULL),
                     0);
    completed = it_int(db,
                       "SELECT count(*) FROM saga.saga WHERE name = 'crash_cart'"
                       " AND status = 'completed'",
                       0, NULL);
    stock = it_int(db, "SELECT available FROM inventory.stock WHERE sku = 'cart-line'", 0,
                   NULL);
    assert_int_equal(stock, 100000 - completed * CART_LINES);
    /* A run where every cart was undone would not show the fan-out and the
     * signal carrying a cart to its end. */
    assert_true(completed > 0);
    print_message("carts: %d (%lld completed, each of its %d lines reserved once; %lld "
                  "undone, nothing left reserved, %lld of them because a line was given "
                  "up after " CART_ATTEMPTS_TEXT
                  " attempts); %lld waited for their signal "
                  "across a kill of sagad\n",
                  n, completed, CART_LINES, (long long)n - completed, gave_up,
                  it_int(db,
                         "SELECT count(DISTINCT e.saga_id) FROM saga.saga_event e JOIN"
                         " saga.saga s ON s.id = e.saga_id WHERE s.name = 'crash_cart'"
                         " AND e.kind = 'step_waiting' AND e.at < (SELECT max(at) FROM"
                         " saga.saga_event WHERE kind = 'signal_received')",
                         0, NULL));
}

static int own(const char *what)
{
    const char *v = getenv(what);
    return v != NULL && strcmp(v, "1") == 0;
}

/* The last "handler begin|end" line of the log at path, in line; returns 1
 * when it is a begin (a handler was running when the log stopped). */
static int handler_running(const char *path, char *line, size_t size)
{
    FILE *f = fopen(path, "r");
    char buf[4096];
    int running = 0;
    line[0] = '\0';
    if (f == NULL)
        return 0;
    while (fgets(buf, sizeof buf, f) != NULL) {
        if (strncmp(buf, "handler begin ", 14) == 0 ||
            strncmp(buf, "handler end ", 12) == 0) {
            size_t n = strlen(buf) < size ? strlen(buf) : size - 1;
            running = buf[8] == 'b';
            memcpy(line, buf, n);
            line[n] = '\0';
        }
    }
    fclose(f);
    line[strcspn(line, "\n")] = '\0';
    return running;
}

static void test_nothing_lost_nothing_doubled(void **state)
{
    int total = env_int("SAGA_CRASH_SAGAS", 240), waves = env_int("SAGA_CRASH_WAVES", 4);
    int per = total / waves, carts = env_int("SAGA_CRASH_CARTS", 30);
    time_t t0 = time(NULL);
    ow_counts counts;
    (void)state;

    srand((unsigned)getpid());
    defs = saga_defs_new(); /* freed by teardown, also when an assertion fails */
    start_carts(carts);
    for (int w = 0; w < waves; w++) {
        ow_start_wave(db, defs, prefix, per, w);
        if (w == 1)
            print_message("%lld carts sent their signal before they wait\n",
                          signal_carts(1));
        if (w == 1) {
            /* A participant dies mid-handler (it sleeps 150 ms in each):
             * wait, with sagad running so that commands come, until its
             * log says a handler began, then kill it. */
            char line[512];
            for (int i = 0;
                 i < 2400 && !handler_running(svc[PAYMENT].log, line, sizeof line); i++)
                sleep_ms(50);
            snprintf(killed_log, sizeof killed_log, "%s", svc[PAYMENT].log);
            it_kill9(&svc[PAYMENT]);
            participant_kills++;
            setenv("SAGA_EXAMPLE_DELAY_MS", "0", 1);
            start_service(PAYMENT);
        }
        /* Let the wave get going, then pull the plug on sagad. */
        sleep_ms(300 + rand() % 1500);
        it_kill9(&sagad);
        kills++;
        if (w == 0) {
            /* Slow down payment so the next kill lands inside a handler. */
            it_stop(&svc[PAYMENT]);
            setenv("SAGA_EXAMPLE_DELAY_MS", "150", 1);
            start_service(PAYMENT);
            unsetenv("SAGA_EXAMPLE_DELAY_MS");
        }
        sleep_ms(200 + rand() % 800);
        start_sagad();
        if (w == 2) {
            char cmd[256];
            if (own("SAGA_SERVICES_OWN_KAFKA")) {
                snprintf(cmd, sizeof cmd, "scripts/services restart-kafka");
                assert_int_equal(system(cmd), 0);
                broker_restarts++;
            } else {
                print_message("SKIPPED: broker restart (the broker is external;"
                              " SAGA_SERVICES_OWN_KAFKA=1 says the test may restart it,"
                              " as scripts/with-services sets under make check)\n");
            }
        }
    }
    /* PostgreSQL restarts under everyone's feet (connections cut). */
    if (own("SAGA_SERVICES_OWN_PG")) {
        assert_int_equal(system("scripts/services restart-pg"), 0);
        pg_restarts++;
        PQreset(db);
        assert_int_equal(PQstatus(db), CONNECTION_OK);
    } else {
        print_message("SKIPPED: database restart (the database is external;"
                      " SAGA_SERVICES_OWN_PG=1 says the test may restart it,"
                      " as scripts/with-services sets under make check)\n");
    }
    /* A last kill while everything is in flight, then let it finish. */
    sleep_ms(500);
    it_kill9(&sagad);
    kills++;
    start_sagad();
    ow_wait_all(db, prefix, 300);
    ow_check(db, prefix, per * waves, &counts);
    check_carts(carts);
    print_message("crash test took %lld s\n", (long long)(time(NULL) - t0));
    /* Stop everything gracefully to collect the figures. */
    assert_int_equal(it_stop(&sagad), 0);
    for (int i = 0; i < NSVC; i++)
        assert_int_equal(it_stop(&svc[i]), 0);
    {
        long long retries =
            it_int(db,
                   "SELECT count(*) FROM saga.saga_event WHERE kind IN"
                   " ('attempt_failed', 'attempt_timed_out') AND saga_id IN"
                   " (SELECT id FROM crash_run)",
                   0, NULL);
        long long duplicates = ow_sum_stat(
            "crash-order-*.log crash-payment-*.log crash-inventory-*.log", "duplicates");
        long long ignored = ow_sum_stat("crash-sagad-*.log", "duplicates ignored");
        char line[512];
        print_message(
            "kills of sagad %d, of a participant %d, broker restarts %d, "
            "database restarts %d, "
            "transient failures retried %lld, duplicate commands absorbed by "
            "participants %lld, duplicate replies ignored by sagad %lld (figures "
            "from processes that exited cleanly)\n",
            kills, participant_kills, broker_restarts, pg_restarts, retries, duplicates,
            ignored);
        if (broker_restarts == 0 || pg_restarts == 0)
            print_message("NOTE: this run did NOT restart the %s: only sagad and a "
                          "participant were killed\n",
                          broker_restarts == 0 && pg_restarts == 0
                              ? "broker or the database"
                          : broker_restarts == 0 ? "broker"
                                                 : "database");
        /* The faults really happened: injected failures and timeouts were
         * retried, and something was delivered twice — a command to a
         * participant or a reply to sagad; which one depends on where the
         * kills land, and a killed process's own counts are lost. */
        assert_true(retries > 0);
        assert_true(duplicates + ignored > 0);
        /* The participant was killed inside a handler: its log ends with a
         * handler that began and never ended. */
        if (!handler_running(killed_log, line, sizeof line))
            fail_msg("%s does not end inside a handler (last: \"%s\"): the kill did not "
                     "land in one",
                     killed_log, line);
        print_message("the participant was killed inside: %s\n", line);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nothing_lost_nothing_doubled),
    };
    return cmocka_run_group_tests_name("crash test (PostgreSQL + Kafka, kill -9)", tests,
                                       setup, teardown);
}
