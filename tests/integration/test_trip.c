/* The trip saga (sagas/trip.json) end to end against a real PostgreSQL and
 * a real Kafka broker: flight, hotel and car booked in parallel, then the
 * payment as the pivot, then the confirmation. Asserts the outcome, which
 * commands each service handled, and every service's business state, for
 * a trip that completes, one whose parallel group fails (a hotel with no
 * room) and one whose pivot is declined (not enough credit). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

/* The travel services, then payment, then sagad. */
static const char *const travel[] = {"flight", "hotel", "car", "itinerary"};
enum { NTRAVEL = 4, NPROCS = NTRAVEL + 2 };
static it_proc procs[NPROCS];
static PGconn *db;
static const char *prefix;

static int group_setup(void **state)
{
    const char *migrate[] = {"migrate", "--dir", "migrations", NULL};
    char out[256];
    (void)state;
    it_isolate_db("trip");
    it_env("SAGA_KAFKA_BROKERS");
    prefix = strdup(it_prefix("trip"));
    setenv("SAGA_TOPIC_PREFIX", prefix, 1);
    if (it_sagactl(out, sizeof out, migrate) != 0) {
        fprintf(stderr, "sagactl migrate failed: %s\n", out);
        return -1;
    }
    db = it_db();
    for (int i = 0; i < NTRAVEL; i++) {
        const char *args[] = {travel[i], NULL};
        if (it_spawn(&procs[i], travel[i], "travel-service", args) != 0 ||
            it_wait_log(&procs[i], "ready", 60000) != 0)
            return -1;
    }
    {
        const char *args[] = {NULL};
        if (it_spawn(&procs[NTRAVEL], "payment", "payment-service", args) != 0 ||
            it_wait_log(&procs[NTRAVEL], "ready", 60000) != 0)
            return -1;
    }
    /* The order saga's services are not running: only payment's table of
     * customers is needed from seed.sql. */
    it_exec(db, "CREATE SCHEMA IF NOT EXISTS inventory;"
                "CREATE TABLE IF NOT EXISTS inventory.stock (sku text PRIMARY KEY,"
                " available int NOT NULL)");
    it_exec_file(db, "examples/seed.sql");
    it_exec_file(db, "examples/trip_seed.sql");
    {
        const char *args[] = {"--definitions", "sagas", NULL};
        if (it_spawn(&procs[NTRAVEL + 1], "sagad", "sagad", args) != 0 ||
            it_wait_log(&procs[NTRAVEL + 1], "sagad running", 60000) != 0)
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
    for (int i = NPROCS - 1; i >= 0; i--)
        if (procs[i].pid > 0 && it_stop(&procs[i]) != 0) {
            fprintf(stderr, "%s did not exit cleanly on SIGTERM\n", procs[i].name);
            rc = -1;
            unclean_stop = 1;
        }
    PQfinish(db);
    free((void *)prefix);
    return rc;
}

static char *start_trip(const char *customer, const char *flight, const char *hotel,
                        const char *car, long amount)
{
    char input[512], out[128];
    const char *args[] = {"start", "trip", "--input", input, NULL};
    snprintf(input, sizeof input,
             "{\"customer_id\":\"%s\",\"flight\":\"%s\",\"travellers\":2,"
             "\"hotel\":\"%s\",\"rooms\":1,\"car\":\"%s\",\"amount\":%ld}",
             customer, flight, hotel, car, amount);
    assert_int_equal(it_sagactl(out, sizeof out, args), 0);
    assert_int_equal(strlen(out), 36);
    return strdup(out);
}

static long long available(const char *service, const char *item)
{
    char sql[128];
    const char *p[1] = {item};
    snprintf(sql, sizeof sql, "SELECT available FROM %s.inventory WHERE item = $1",
             service);
    return it_int(db, sql, 1, p);
}

static long long credit_limit(const char *customer)
{
    const char *p[1] = {customer};
    return it_int(db, "SELECT credit_limit FROM payment.customers WHERE id = $1", 1, p);
}

static char *step_statuses(const char *id)
{
    const char *p[1] = {id};
    return it_value(db,
                    "SELECT string_agg(name || '=' || status, ',' ORDER BY idx)"
                    " FROM saga.saga_step WHERE saga_id = $1",
                    1, p);
}

/* How many commands of this phase the service applied for the saga (its
 * barrier's rows that were not refused). */
static long long handled(const char *id, const char *schema, const char *phase)
{
    char sql[256];
    const char *p[2] = {id, phase};
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM %s.saga_barrier WHERE saga_id = $1 AND phase = $2"
             " AND outcome <> 'blocked'",
             schema);
    return it_int(db, sql, 2, p);
}

/* The compensations, in the order they were applied across the services. */
static char *compensations(const char *id)
{
    const char *p[1] = {id};
    return it_value(db,
                    "SELECT coalesce(string_agg(svc, ',' ORDER BY at), '') FROM ("
                    " SELECT 'flight' AS svc, created_at AS at, phase, outcome"
                    "  FROM flight.saga_barrier WHERE saga_id = $1"
                    " UNION ALL SELECT 'hotel', created_at, phase, outcome"
                    "  FROM hotel.saga_barrier WHERE saga_id = $1"
                    " UNION ALL SELECT 'car', created_at, phase, outcome"
                    "  FROM car.saga_barrier WHERE saga_id = $1) x"
                    " WHERE phase = 'compensate'",
                    1, p);
}

static long long trips(const char *id)
{
    const char *p[1] = {id};
    return it_int(db, "SELECT count(*) FROM itinerary.trips WHERE saga_id = $1", 1, p);
}

static long long charges(const char *id)
{
    const char *p[1] = {id};
    return it_int(db, "SELECT count(*) FROM payment.charges WHERE saga_id = $1", 1, p);
}

static void test_trip_completes(void **state)
{
    long long seats = available("flight", "LH400"),
              rooms = available("hotel", "harbour-view");
    long long cars = available("car", "compact"), credit = credit_limit("alice");
    char *id, *steps, *conf;
    const char *p[1];
    (void)state;

    id = start_trip("alice", "LH400", "harbour-view", "compact", 2400);
    assert_string_equal(it_wait_final(db, id, 60000), "completed");
    steps = step_statuses(id);
    assert_string_equal(steps, "book_flight=succeeded,book_hotel=succeeded,"
                               "book_car=succeeded,take_payment=succeeded,"
                               "confirm_trip=succeeded");
    assert_int_equal(available("flight", "LH400"), seats - 2);
    assert_int_equal(available("hotel", "harbour-view"), rooms - 1);
    assert_int_equal(available("car", "compact"), cars - 1);
    assert_int_equal(credit_limit("alice"), credit - 2400);
    assert_int_equal(charges(id), 1);
    p[0] = id;
    /* The itinerary carries the references the bookings returned. */
    conf = it_value(db,
                    "SELECT flight || ' ' || hotel || ' ' || car || ' ' ||"
                    " (charge_id = saga_id::text)::text FROM itinerary.trips"
                    " WHERE saga_id = $1",
                    1, p);
    assert_non_null(conf);
    assert_non_null(strstr(conf, "FL-"));
    assert_non_null(strstr(conf, "HO-"));
    assert_non_null(strstr(conf, "CA-"));
    assert_non_null(strstr(conf, " true"));
    /* The three bookings went out together, before the payment. */
    assert_int_equal(
        it_int(db,
               "SELECT count(DISTINCT at) FROM saga.saga_event WHERE saga_id = $1"
               " AND kind = 'step_dispatched' AND step IN (0, 1, 2)",
               1, p),
        1);
    assert_int_equal(
        it_int(db,
               "SELECT count(*) FROM saga.saga_event pay WHERE pay.saga_id = $1"
               " AND pay.kind = 'step_dispatched' AND pay.step = 3 AND pay.at >= ALL ("
               "  SELECT at FROM saga.saga_event WHERE saga_id = $1"
               "  AND kind = 'step_succeeded' AND step IN (0, 1, 2))",
               1, p),
        1);
    free(conf);
    free(steps);
    free(id);
}

/* No room at the hotel: the flight and the car booked beside it are
 * cancelled (last index first), nothing is charged, nothing confirmed. */
static void test_group_failure_compensates_the_group(void **state)
{
    long long seats = available("flight", "LH400"), cars = available("car", "compact");
    long long credit = credit_limit("alice");
    char *id, *steps, *order;
    (void)state;

    id = start_trip("alice", "LH400", "full-house", "compact", 1800);
    assert_string_equal(it_wait_final(db, id, 60000), "compensated");
    steps = step_statuses(id);
    assert_string_equal(steps, "book_flight=compensated,book_hotel=failed,"
                               "book_car=compensated,take_payment=pending,"
                               "confirm_trip=pending");
    order = compensations(id);
    assert_string_equal(order, "car,flight");
    assert_int_equal(handled(id, "hotel", "compensate"), 0);
    assert_int_equal(available("flight", "LH400"), seats);
    assert_int_equal(available("car", "compact"), cars);
    assert_int_equal(available("hotel", "full-house"), 0);
    assert_int_equal(credit_limit("alice"), credit);
    assert_int_equal(charges(id), 0);
    assert_int_equal(trips(id), 0);
    free(order);
    free(steps);
    free(id);
}

/* bob's credit (500) does not cover the trip: the pivot is declined, so
 * the point of no return was not passed and all three bookings are undone. */
static void test_declined_payment_compensates_every_booking(void **state)
{
    long long seats = available("flight", "LH400"),
              rooms = available("hotel", "harbour-view");
    long long vans = available("car", "van"), credit = credit_limit("bob");
    char *id, *steps, *order;
    (void)state;

    id = start_trip("bob", "LH400", "harbour-view", "van", 900);
    assert_string_equal(it_wait_final(db, id, 60000), "compensated");
    steps = step_statuses(id);
    assert_string_equal(steps, "book_flight=compensated,book_hotel=compensated,"
                               "book_car=compensated,take_payment=failed,"
                               "confirm_trip=pending");
    order = compensations(id);
    assert_string_equal(order, "car,hotel,flight");
    assert_int_equal(handled(id, "flight", "invoke"), 1);
    assert_int_equal(handled(id, "hotel", "invoke"), 1);
    assert_int_equal(handled(id, "car", "invoke"), 1);
    assert_int_equal(available("flight", "LH400"), seats);
    assert_int_equal(available("hotel", "harbour-view"), rooms);
    assert_int_equal(available("car", "van"), vans);
    assert_int_equal(credit_limit("bob"), credit);
    assert_int_equal(charges(id), 0);
    assert_int_equal(trips(id), 0);
    {
        const char *p[1] = {id};
        char *err = it_value(db,
                             "SELECT error->>'code' FROM saga.saga_step"
                             " WHERE saga_id = $1 AND name = 'take_payment'",
                             1, p);
        assert_non_null(err);
        assert_string_equal(err, "insufficient_credit");
        free(err);
    }
    free(order);
    free(steps);
    free(id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trip_completes),
        cmocka_unit_test(test_group_failure_compensates_the_group),
        cmocka_unit_test(test_declined_payment_compensates_every_booking),
    };
    int failed = cmocka_run_group_tests_name("trip saga (PostgreSQL + Kafka)", tests,
                                             group_setup, group_teardown);
    return failed != 0 || unclean_stop ? 1 : 0;
}
