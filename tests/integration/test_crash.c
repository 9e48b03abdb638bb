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
#include "order_workload.h"
#include "saga_machine.h"
#include "saga_store.h"

enum { PAYMENT = OW_PAYMENT, NSVC = OW_NSVC };

static PGconn *db;
static char *prefix;
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
    ow_start_service(&svc[i], i, "crash", ++svc_starts[i]);
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
    (void)state;
    /* No static membership here (SAGA_INSTANCE_ID): after a broker restart
     * librdkafka 2.0 can be fenced for good (confluent-kafka-go#494); a
     * crashed sagad's partitions then move on after the session timeout. */
    if (ow_setup("crash", &db, &prefix) != 0)
        return -1;
    /* Transient trouble in every participant. */
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
    PQfinish(db);
    free(prefix);
    return 0;
}

static int own(const char *what)
{
    const char *v = getenv(what);
    return v != NULL && strcmp(v, "1") == 0;
}

static void test_nothing_lost_nothing_doubled(void **state)
{
    int total = env_int("SAGA_CRASH_SAGAS", 240), waves = env_int("SAGA_CRASH_WAVES", 4);
    int per = total / waves;
    saga_defs *defs = saga_defs_new();
    time_t t0 = time(NULL);
    ow_counts counts;
    (void)state;

    srand((unsigned)getpid());
    for (int w = 0; w < waves; w++) {
        ow_start_wave(db, defs, prefix, per, w);
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
    ow_wait_all(db, prefix, 300);
    ow_check(db, prefix, per * waves, &counts);
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
        print_message(
            "kills of sagad %d, of a participant %d, broker restarts %d, "
            "database restarts %d, "
            "transient failures retried %lld, duplicate commands absorbed by "
            "participants %lld, duplicate replies ignored by sagad %lld (figures "
            "from processes that exited cleanly)\n",
            kills, participant_kills, broker_restarts, pg_restarts, retries,
            ow_sum_stat("crash-order-*.log crash-payment-*.log crash-inventory-*.log",
                        "duplicates"),
            ow_sum_stat("crash-sagad-*.log", "duplicates ignored"));
    }
    saga_defs_free(defs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nothing_lost_nothing_doubled),
    };
    return cmocka_run_group_tests_name("crash test (PostgreSQL + Kafka, kill -9)", tests,
                                       setup, teardown);
}
