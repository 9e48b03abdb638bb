/* The crash test: a few hundred order sagas with business failures,
 * transient errors (participants answer `retry` or sleep past the timeout
 * at random), while sagad is killed with SIGKILL and restarted several
 * times, a participant is killed mid-handler, and the Kafka broker is
 * restarted once. Afterwards every saga must have ended, and the
 * participants' business state must be exactly what the final statuses
 * imply: no double effect, no leaked reservation.
 *
 * Size: SAGA_CRASH_SAGAS (default 240) sagas in SAGA_CRASH_WAVES (4) waves. */
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
#include "saga_machine.h"
#include "saga_store.h"

enum { ORDER, PAYMENT, INVENTORY, NSVC };
static const char *const svc_names[NSVC] = {"order", "payment", "inventory"};

static PGconn *db;
static const char *prefix;
static it_proc svc[NSVC], sagad;
static int sagad_starts, svc_starts[NSVC];
static int kills, participant_kills, broker_restarts, pg_restarts;

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
    char name[64], prog[64];
    const char *args[] = {NULL};
    snprintf(name, sizeof name, "crash-%s-%d", svc_names[i], ++svc_starts[i]);
    snprintf(prog, sizeof prog, "%s-service", svc_names[i]);
    assert_int_equal(it_spawn(&svc[i], name, prog, args), 0);
    assert_int_equal(it_wait_log(&svc[i], "ready", 60000), 0);
}

static void start_sagad(void)
{
    char name[64];
    const char *args[] = {"--definitions", "tests/integration/crash_sagas", NULL};
    snprintf(name, sizeof name, "crash-sagad-%d", ++sagad_starts);
    assert_int_equal(it_spawn(&sagad, name, "sagad", args), 0);
    assert_int_equal(it_wait_log(&sagad, "sagad running", 60000), 0);
}

static int setup(void **state)
{
    const char *migrate[] = {"migrate", "--dir", "migrations", NULL};
    (void)state;
    it_isolate_db("crash");
    it_env("SAGA_KAFKA_BROKERS");
    prefix = strdup(it_prefix("crash"));
    setenv("SAGA_TOPIC_PREFIX", prefix, 1);
    /* No static membership here (SAGA_INSTANCE_ID): after a broker restart
     * librdkafka 2.0 can be fenced for good (confluent-kafka-go#494); a
     * crashed sagad's partitions then move on after the session timeout. */
    if (it_sagactl(NULL, 0, migrate) != 0)
        return -1;
    db = it_db();
    /* Transient trouble in every participant. */
    setenv("SAGA_EXAMPLE_FAIL_RATE", "0.08", 1);
    setenv("SAGA_EXAMPLE_SLOW_RATE", "0.02", 1);
    setenv("SAGA_EXAMPLE_SLOW_MS", "3500", 1);
    for (int i = 0; i < NSVC; i++)
        start_service(i);
    it_exec(db, "INSERT INTO payment.customers (id, credit_limit, reserved)"
                " SELECT 'crash-c' || g, CASE WHEN g = 9 THEN 300 ELSE 100000000 END, 0"
                " FROM generate_series(0, 9) g"
                " ON CONFLICT (id) DO UPDATE SET credit_limit = EXCLUDED.credit_limit,"
                " reserved = 0;"
                "DELETE FROM payment.reservations r USING payment.customers c"
                " WHERE r.customer_id = c.id AND c.id LIKE 'crash-%';"
                "INSERT INTO inventory.stock (sku, available) VALUES"
                " ('crash-w', 100000), ('crash-g', 30)"
                " ON CONFLICT (sku) DO UPDATE SET available = EXCLUDED.available;"
                "DELETE FROM inventory.reservations WHERE sku LIKE 'crash-%'");
    start_sagad();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (sagad.pid > 0)
        it_stop(&sagad);
    for (int i = 0; i < NSVC; i++)
        if (svc[i].pid > 0)
            it_stop(&svc[i]);
    PQfinish(db);
    free((void *)prefix);
    return 0;
}

/* Start n sagas in one transaction, the way sagactl start does. */
static void start_wave(saga_defs *defs, int n, int wave, char (*ids)[SAGA_ID_LEN + 1])
{
    const saga_definition *def;
    saga_store_opts so = {prefix, "crash-test"};
    saga_error err = {0};

    assert_int_equal(saga_store_get_definition(db, defs, "crash_order", 0, &def, &err),
                     0);
    it_exec(db, "BEGIN");
    for (int i = 0; i < n; i++) {
        uuid_t u;
        char key[64], existing[SAGA_ID_LEN + 1];
        int existed = 0, k = wave * 1000 + i;
        saga_actions acts = {0};
        saga_event ev = {
            .kind = SAGA_EV_START, .now = saga_now_ms(), .random = 0.5, .reply = NULL};
        saga_outbox sent = {0};
        saga_state *s;
        json_t *input;
        /* One customer in ten has too little credit; one order in four
         * wants the scarce gadget, which runs out. */
        char customer[32];
        snprintf(customer, sizeof customer, "crash-c%d", k % 10 == 9 ? 9 : k % 9);
        input = json_pack("{s:s, s:s, s:i, s:i}", "customer_id", customer, "sku",
                          k % 4 == 3 ? "crash-g" : "crash-w", "quantity", 1 + k % 3,
                          "amount", 100 + (k * 37) % 400);
        uuid_generate_random(u);
        uuid_unparse_lower(u, ids[i]);
        s = saga_state_new(def, ids[i], input);
        json_decref(input);
        assert_int_equal(saga_machine_apply(s, &ev, &acts, NULL), SAGA_APPLIED);
        snprintf(key, sizeof key, "%s%d", prefix, k);
        assert_int_equal(
            saga_store_create(db, s, &acts, key, &so, &existed, existing, &sent, &err),
            0);
        saga_actions_clear(&acts);
        saga_outbox_clear(&sent);
        saga_state_free(s);
    }
    it_exec(db, "NOTIFY saga_outbox");
    it_exec(db, "COMMIT");
}

static int own(const char *what)
{
    const char *v = getenv(what);
    return v != NULL && strcmp(v, "1") == 0;
}

/* Sum "N <word>" figures from the "stopped:" lines of the logs named
 * pattern (a shell glob). */
static long long sum_stat(const char *pattern, const char *word)
{
    char cmd[1024], line[256];
    FILE *f;
    long long total = 0;
    snprintf(cmd, sizeof cmd,
             "cat %s/tests/logs/%s 2>/dev/null | grep -o '[0-9]* %s' | awk '{s+=$1} END "
             "{print s+0}'",
             it_env("SAGA_BUILD_DIR"), pattern, word);
    f = popen(cmd, "r");
    if (f != NULL && fgets(line, sizeof line, f) != NULL)
        total = atoll(line);
    if (f != NULL)
        pclose(f);
    return total;
}

static void test_nothing_lost_nothing_doubled(void **state)
{
    int total = env_int("SAGA_CRASH_SAGAS", 240), waves = env_int("SAGA_CRASH_WAVES", 4);
    int per = total / waves;
    saga_defs *defs = saga_defs_new();
    char(*ids)[SAGA_ID_LEN + 1] = calloc((size_t)total, sizeof *ids);
    time_t t0 = time(NULL);
    long long n, completed, compensated, failed, running;
    (void)state;

    srand((unsigned)getpid());
    for (int w = 0; w < waves; w++) {
        start_wave(defs, per, w, ids + w * per);
        /* Let the wave get going, then pull the plug on sagad. */
        sleep_ms(300 + rand() % 1500);
        it_kill9(&sagad);
        kills++;
        if (w == 1) {
            /* A participant dies mid-handler (it sleeps 150 ms in each). */
            it_kill9(&svc[PAYMENT]);
            participant_kills++;
            setenv("SAGA_EXAMPLE_DELAY_MS", "0", 1);
            start_service(PAYMENT);
        }
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
                print_message("broker restart not done: the broker is external\n");
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
        print_message("database restart not done: the database is external\n");
    }
    /* A last kill while everything is in flight, then let it finish. */
    sleep_ms(500);
    it_kill9(&sagad);
    kills++;
    start_sagad();
    for (int waited = 0; waited < 300; waited++) {
        const char *p[1] = {prefix};
        long long open =
            it_int(db,
                   "SELECT count(*) FROM saga.saga WHERE status IN"
                   " ('running', 'compensating') AND idempotency_key LIKE $1 || '%'",
                   1, p);
        if (open == 0)
            break;
        sleep_ms(1000);
    }
    {
        const char *p[1] = {prefix};
#define COUNT(st)                                                                        \
    it_int(db,                                                                           \
           "SELECT count(*) FROM saga.saga WHERE status = '" st "'"                      \
           " AND idempotency_key LIKE $1 || '%'",                                        \
           1, p)
        completed = COUNT("completed");
        compensated = COUNT("compensated");
        failed = COUNT("failed");
        running = it_int(db,
                         "SELECT count(*) FROM saga.saga WHERE status IN ('running',"
                         " 'compensating') AND idempotency_key LIKE $1 || '%'",
                         1, p);
        n = completed + compensated + failed + running;
    }
    print_message(
        "sagas %lld: %lld completed, %lld compensated, %lld failed, %lld unfinished "
        "(%lld s)\n",
        n, completed, compensated, failed, running, (long long)(time(NULL) - t0));
    assert_int_equal(n, per * waves);
    assert_int_equal(running, 0);
    assert_int_equal(failed, 0);
    assert_true(completed > 0);
    assert_true(compensated > 0);

    /* Build the list of this run's sagas for the checks below. */
    {
        char sql[512];
        snprintf(sql, sizeof sql,
                 "DROP TABLE IF EXISTS crash_run; CREATE TEMP TABLE crash_run AS"
                 " SELECT id, status FROM saga.saga WHERE idempotency_key LIKE '%s%%'",
                 prefix);
        it_exec(db, sql);
    }
    /* Every completed saga: order approved, credit and stock reserved. */
    assert_int_equal(
        it_int(db,
               "SELECT count(*) FROM crash_run c WHERE c.status = 'completed' AND"
               " (NOT EXISTS (SELECT 1 FROM orders.orders o WHERE o.saga_id = c.id"
               "   AND o.status = 'approved')"
               " OR NOT EXISTS (SELECT 1 FROM payment.reservations r"
               "   WHERE r.saga_id = c.id AND r.status = 'reserved')"
               " OR NOT EXISTS (SELECT 1 FROM inventory.reservations r"
               "   WHERE r.saga_id = c.id AND r.status = 'reserved'))",
               0, NULL),
        0);
    /* Every compensated saga: nothing left reserved, no live order. */
    assert_int_equal(
        it_int(db,
               "SELECT count(*) FROM crash_run c WHERE c.status = 'compensated' AND"
               " (EXISTS (SELECT 1 FROM orders.orders o WHERE o.saga_id = c.id"
               "   AND o.status <> 'cancelled')"
               " OR EXISTS (SELECT 1 FROM payment.reservations r"
               "   WHERE r.saga_id = c.id AND r.status = 'reserved')"
               " OR EXISTS (SELECT 1 FROM inventory.reservations r"
               "   WHERE r.saga_id = c.id AND r.status = 'reserved'))",
               0, NULL),
        0);
    /* Balances agree with the reservations: nothing reserved twice or leaked. */
    assert_int_equal(
        it_int(db,
               "SELECT count(*) FROM payment.customers c WHERE c.id LIKE 'crash-%'"
               " AND c.reserved <> (SELECT coalesce(sum(amount), 0) FROM"
               " payment.reservations r WHERE r.customer_id = c.id"
               " AND r.status = 'reserved')",
               0, NULL),
        0);
    assert_int_equal(
        it_int(db,
               "SELECT count(*) FROM inventory.stock s WHERE s.sku LIKE 'crash-%'"
               " AND s.available + (SELECT coalesce(sum(quantity), 0) FROM"
               " inventory.reservations r WHERE r.sku = s.sku"
               " AND r.status = 'reserved')"
               " <> CASE s.sku WHEN 'crash-g' THEN 30 ELSE 100000 END",
               0, NULL),
        0);
    /* Each action took effect at most once per saga (a handler's log row
     * commits with its effect, so a double effect would show here). */
    assert_int_equal(
        it_int(db,
               "SELECT count(*) FROM (SELECT saga_id, action FROM ("
               " SELECT saga_id, action FROM orders.command_log"
               " UNION ALL SELECT saga_id, action FROM payment.command_log"
               " UNION ALL SELECT saga_id, action FROM inventory.command_log) x"
               " WHERE saga_id IN (SELECT id FROM crash_run)"
               " GROUP BY saga_id, action HAVING count(*) > 1) d",
               0, NULL),
        0);
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
        print_message(
            "kills of sagad %d, of a participant %d, broker restarts %d, "
            "database restarts %d, "
            "transient failures retried %lld, duplicate commands absorbed by "
            "participants %lld, duplicate replies ignored by sagad %lld (figures "
            "from processes that exited cleanly)\n",
            kills, participant_kills, broker_restarts, pg_restarts, retries,
            sum_stat("crash-order-*.log crash-payment-*.log crash-inventory-*.log",
                     "duplicates"),
            sum_stat("crash-sagad-*.log", "duplicates ignored"));
    }
    saga_defs_free(defs);
    free(ids);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nothing_lost_nothing_doubled),
    };
    return cmocka_run_group_tests_name("crash test (PostgreSQL + Kafka, kill -9)", tests,
                                       setup, teardown);
}
