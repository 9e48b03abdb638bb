/* Circuit breaker and bulkhead: every breaker state against every event,
 * table-driven, then growth, bounds and misuse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "saga/error.h"
#include "saga_breaker.h"
#include "saga_bulkhead.h"

#define T0  10000
#define SVC "payment"

static const saga_breaker_config cfg = {
    .failure_threshold = 3,
    .cooldown_ms = 1000,
    .cooldown_factor = 2,
    .max_cooldown_ms = 3000,
    .probe_timeout_ms = 500,
    .max_services = 4,
};

typedef enum start {
    CLOSED_ONE,   /* closed, one failure */
    CLOSED_EDGE,  /* closed, one failure short of opening */
    OPEN,         /* open, cool-down running */
    OPEN_ELAPSED, /* open, cool-down over, nobody asked yet */
    HALF_PROBE,   /* half-open, the probe is out */
    HALF_LOST,    /* half-open, the probe is out longer than probe_timeout */
    HALF_FREE,    /* half-open, the probe was cancelled */
} start;

typedef enum event { EV_ALLOW, EV_SUCCESS, EV_FAILURE, EV_CANCELLED } event;

/* Put a new breaker into state s; returns the time the event happens at. */
static int64_t arrange(saga_breaker *b, start s)
{
    int fails = s == CLOSED_ONE ? 1 : s == CLOSED_EDGE ? 2 : 3;
    for (int i = 0; i < fails; i++)
        assert_int_equal(saga_breaker_record(b, SVC, SAGA_BREAKER_FAILURE, T0), SAGA_OK);
    switch (s) {
    case CLOSED_ONE:
    case CLOSED_EDGE:
    case OPEN:
        return T0 + 10;
    case OPEN_ELAPSED:
        return T0 + 1000;
    case HALF_PROBE:
    case HALF_LOST:
    case HALF_FREE:
        assert_int_equal(saga_breaker_allow(b, SVC, T0 + 1000, NULL), SAGA_BREAKER_ALLOW);
        if (s == HALF_FREE)
            assert_int_equal(
                saga_breaker_record(b, SVC, SAGA_BREAKER_CANCELLED, T0 + 1001), SAGA_OK);
        return s == HALF_LOST ? T0 + 1500 : T0 + 1100;
    }
    return 0;
}

typedef struct row {
    start from;
    event ev;
    saga_breaker_decision decision; /* EV_ALLOW only */
    int64_t wait_until;             /* REJECT only: absolute */
    saga_breaker_state to;          /* effective, at the event's time */
    int failures;
    int64_t open_for; /* to == OPEN: open_until - now, if set by this event */
} row;

#define A  SAGA_BREAKER_ALLOW
#define R  SAGA_BREAKER_REJECT
#define C  SAGA_BREAKER_CLOSED
#define O  SAGA_BREAKER_OPEN
#define HO SAGA_BREAKER_HALF_OPEN

static const row table[] = {
    {CLOSED_ONE, EV_ALLOW, A, 0, C, 1, 0},
    {CLOSED_ONE, EV_SUCCESS, A, 0, C, 0, 0},
    {CLOSED_ONE, EV_FAILURE, A, 0, C, 2, 0},
    {CLOSED_ONE, EV_CANCELLED, A, 0, C, 1, 0},

    {CLOSED_EDGE, EV_ALLOW, A, 0, C, 2, 0},
    {CLOSED_EDGE, EV_SUCCESS, A, 0, C, 0, 0},
    {CLOSED_EDGE, EV_FAILURE, A, 0, O, 3, 1000},
    {CLOSED_EDGE, EV_CANCELLED, A, 0, C, 2, 0},

    /* Outcomes while open are late answers to earlier commands: ignored. */
    {OPEN, EV_ALLOW, R, T0 + 1000, O, 3, 0},
    {OPEN, EV_SUCCESS, A, 0, O, 3, 0},
    {OPEN, EV_FAILURE, A, 0, O, 3, 0},
    {OPEN, EV_CANCELLED, A, 0, O, 3, 0},

    {OPEN_ELAPSED, EV_ALLOW, A, 0, HO, 3, 0},
    {OPEN_ELAPSED, EV_SUCCESS, A, 0, HO, 3, 0},
    {OPEN_ELAPSED, EV_FAILURE, A, 0, HO, 3, 0},
    {OPEN_ELAPSED, EV_CANCELLED, A, 0, HO, 3, 0},

    /* One probe only; its outcome decides; the cool-down doubles. */
    {HALF_PROBE, EV_ALLOW, R, T0 + 1500, HO, 3, 0},
    {HALF_PROBE, EV_SUCCESS, A, 0, C, 0, 0},
    {HALF_PROBE, EV_FAILURE, A, 0, O, 4, 2000},
    {HALF_PROBE, EV_CANCELLED, A, 0, HO, 3, 0},

    {HALF_LOST, EV_ALLOW, A, 0, HO, 3, 0},
    {HALF_LOST, EV_SUCCESS, A, 0, C, 0, 0},
    {HALF_LOST, EV_FAILURE, A, 0, O, 4, 2000},
    {HALF_LOST, EV_CANCELLED, A, 0, HO, 3, 0},

    {HALF_FREE, EV_ALLOW, A, 0, HO, 3, 0},
    {HALF_FREE, EV_SUCCESS, A, 0, C, 0, 0},
    {HALF_FREE, EV_FAILURE, A, 0, O, 4, 2000},
    {HALF_FREE, EV_CANCELLED, A, 0, HO, 3, 0},
};

static void test_state_event_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        const row *r = &table[i];
        saga_breaker *b;
        saga_breaker_info info;
        int64_t now, wait = -1;
        assert_int_equal(saga_breaker_new(&cfg, &b), SAGA_OK);
        now = arrange(b, r->from);
        if (r->ev == EV_ALLOW) {
            saga_breaker_decision d = saga_breaker_allow(b, SVC, now, &wait);
            if (d != r->decision)
                fail_msg("row %zu: decision %d, expected %d", i, d, r->decision);
            if (d == R && wait != r->wait_until)
                fail_msg("row %zu: wait until %lld, expected %lld", i, (long long)wait,
                         (long long)r->wait_until);
        } else {
            saga_breaker_outcome o = r->ev == EV_SUCCESS   ? SAGA_BREAKER_SUCCESS
                                     : r->ev == EV_FAILURE ? SAGA_BREAKER_FAILURE
                                                           : SAGA_BREAKER_CANCELLED;
            assert_int_equal(saga_breaker_record(b, SVC, o, now), SAGA_OK);
        }
        assert_int_equal(saga_breaker_get(b, SVC, now, &info), SAGA_OK);
        if (info.state != r->to || info.consecutive_failures != r->failures)
            fail_msg("row %zu: state %s with %d failures, expected %s with %d", i,
                     saga_breaker_state_name(info.state), info.consecutive_failures,
                     saga_breaker_state_name(r->to), r->failures);
        if (r->open_for > 0 && info.open_until_ms != now + r->open_for)
            fail_msg("row %zu: open until %lld, expected %lld", i,
                     (long long)info.open_until_ms, (long long)(now + r->open_for));
        saga_breaker_free(b);
    }
}

/* After a cancelled or lost probe, exactly one new probe goes out. */
static void test_single_probe(void **state)
{
    saga_breaker *b;
    int64_t wait = 0;
    (void)state;
    assert_int_equal(saga_breaker_new(&cfg, &b), SAGA_OK);
    arrange(b, HALF_FREE);
    assert_int_equal(saga_breaker_allow(b, SVC, T0 + 1100, NULL), A);
    assert_int_equal(saga_breaker_allow(b, SVC, T0 + 1101, &wait), R);
    assert_int_equal(wait, T0 + 1600);
    assert_int_equal(saga_breaker_allow(b, SVC, T0 + 1600, NULL), A); /* lost: again */
    assert_int_equal(saga_breaker_allow(b, SVC, T0 + 1601, NULL), R);
    saga_breaker_free(b);
}

/* Each failed probe doubles the cool-down up to the cap; a success resets it. */
static void test_cooldown_grows_and_resets(void **state)
{
    saga_breaker *b;
    saga_breaker_info info;
    int64_t now = T0;
    const int64_t expect[] = {2000, 3000, 3000};
    (void)state;
    assert_int_equal(saga_breaker_new(&cfg, &b), SAGA_OK);
    arrange(b, OPEN);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(saga_breaker_get(b, SVC, now, &info), SAGA_OK);
        now = info.open_until_ms;
        assert_int_equal(saga_breaker_allow(b, SVC, now, NULL), A);
        assert_int_equal(saga_breaker_record(b, SVC, SAGA_BREAKER_FAILURE, now), SAGA_OK);
        assert_int_equal(saga_breaker_get(b, SVC, now, &info), SAGA_OK);
        assert_int_equal(info.state, O);
        assert_int_equal(info.cooldown_ms, expect[i]);
        assert_int_equal(info.open_until_ms, now + expect[i]);
    }
    assert_int_equal(info.opened_total, 4);
    now = info.open_until_ms;
    assert_int_equal(saga_breaker_allow(b, SVC, now, NULL), A);
    assert_int_equal(saga_breaker_record(b, SVC, SAGA_BREAKER_SUCCESS, now), SAGA_OK);
    assert_int_equal(saga_breaker_get(b, SVC, now, &info), SAGA_OK);
    assert_int_equal(info.state, C);
    assert_int_equal(info.cooldown_ms, 1000);
    /* Opening again starts from the base cool-down. */
    for (int i = 0; i < 3; i++)
        saga_breaker_record(b, SVC, SAGA_BREAKER_FAILURE, now);
    assert_int_equal(saga_breaker_get(b, SVC, now, &info), SAGA_OK);
    assert_int_equal(info.open_until_ms, now + 1000);
    saga_breaker_free(b);
}

/* Failures must be consecutive: a success in between starts over. */
static void test_failures_must_be_consecutive(void **state)
{
    saga_breaker *b;
    saga_breaker_info info;
    (void)state;
    assert_int_equal(saga_breaker_new(&cfg, &b), SAGA_OK);
    for (int i = 0; i < 10; i++) {
        saga_breaker_record(b, SVC, SAGA_BREAKER_FAILURE, T0 + i);
        if (i % 2 == 1)
            saga_breaker_record(b, SVC, SAGA_BREAKER_SUCCESS, T0 + i);
    }
    assert_int_equal(saga_breaker_get(b, SVC, T0 + 10, &info), SAGA_OK);
    assert_int_equal(info.state, C);
    assert_int_equal(saga_breaker_allow(b, SVC, T0 + 10, NULL), A);
    saga_breaker_free(b);
}

/* Services are independent; memory is bounded; a full table fails open. */
static void test_bounded_services(void **state)
{
    saga_breaker *b;
    saga_breaker_info info;
    char name[16];
    (void)state;
    assert_int_equal(saga_breaker_new(&cfg, &b), SAGA_OK);
    /* Successes and allows on healthy services take no slot. */
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "s%d", i);
        assert_int_equal(saga_breaker_allow(b, name, T0, NULL), A);
        assert_int_equal(saga_breaker_record(b, name, SAGA_BREAKER_SUCCESS, T0), SAGA_OK);
    }
    assert_int_equal(saga_breaker_get(b, "s0", T0, &info), SAGA_ENOTFOUND);
    /* Four services open: the table (4) is full of state worth keeping. */
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "s%d", i);
        for (int k = 0; k < 3; k++)
            assert_int_equal(saga_breaker_record(b, name, SAGA_BREAKER_FAILURE, T0),
                             SAGA_OK);
        assert_int_equal(saga_breaker_allow(b, name, T0 + 1, NULL), R);
    }
    assert_int_equal(saga_breaker_record(b, "s9", SAGA_BREAKER_FAILURE, T0), SAGA_ENOMEM);
    assert_int_equal(saga_breaker_allow(b, "s9", T0, NULL), A);
    /* s0 recovers; a closed service without failures may be forgotten. */
    assert_int_equal(saga_breaker_allow(b, "s0", T0 + 1000, NULL), A);
    assert_int_equal(saga_breaker_record(b, "s0", SAGA_BREAKER_SUCCESS, T0 + 1000),
                     SAGA_OK);
    assert_int_equal(saga_breaker_record(b, "s9", SAGA_BREAKER_FAILURE, T0), SAGA_OK);
    assert_int_equal(saga_breaker_get(b, "s0", T0, &info), SAGA_ENOTFOUND);
    assert_int_equal(saga_breaker_get(b, "s9", T0, &info), SAGA_OK);
    assert_int_equal(info.consecutive_failures, 1);
    assert_int_equal(saga_breaker_get(b, "s1", T0 + 1, &info), SAGA_OK);
    assert_int_equal(info.state, O);
    assert_int_equal(info.rejected_total, 1);
    saga_breaker_foreach(b, T0, NULL, NULL); /* no visitor: a no-op */
    saga_breaker_free(b);
}

static void count_visit(const char *service, const saga_breaker_info *info, void *arg)
{
    int *n = arg;
    assert_non_null(service);
    assert_non_null(info);
    (*n)++;
}

static void test_foreach_and_names(void **state)
{
    saga_breaker *b;
    int n = 0;
    (void)state;
    assert_int_equal(saga_breaker_new(NULL, &b), SAGA_OK); /* defaults */
    saga_breaker_record(b, "a", SAGA_BREAKER_FAILURE, T0);
    saga_breaker_record(b, "b", SAGA_BREAKER_FAILURE, T0);
    saga_breaker_foreach(b, T0, count_visit, &n);
    assert_int_equal(n, 2);
    /* Default threshold is 5. */
    for (int i = 0; i < 4; i++)
        saga_breaker_record(b, "a", SAGA_BREAKER_FAILURE, T0);
    assert_int_equal(saga_breaker_allow(b, "a", T0, NULL), R);
    assert_string_equal(saga_breaker_state_name(C), "closed");
    assert_string_equal(saga_breaker_state_name(O), "open");
    assert_string_equal(saga_breaker_state_name(HO), "half_open");
    saga_breaker_free(b);
}

static void test_breaker_misuse(void **state)
{
    saga_breaker *b = (saga_breaker *)0x1;
    saga_breaker_info info;
    (void)state;
    assert_int_equal(saga_breaker_new(&cfg, NULL), SAGA_EINVAL);
    assert_int_equal(saga_breaker_allow(NULL, SVC, T0, NULL), A);
    assert_int_equal(saga_breaker_record(NULL, SVC, SAGA_BREAKER_FAILURE, T0),
                     SAGA_EINVAL);
    assert_int_equal(saga_breaker_new(&cfg, &b), SAGA_OK);
    assert_int_equal(saga_breaker_record(b, NULL, SAGA_BREAKER_FAILURE, T0), SAGA_EINVAL);
    assert_int_equal(saga_breaker_record(b, SVC, (saga_breaker_outcome)42, T0),
                     SAGA_EINVAL);
    assert_int_equal(saga_breaker_get(b, SVC, T0, NULL), SAGA_EINVAL);
    assert_int_equal(saga_breaker_get(NULL, SVC, T0, &info), SAGA_EINVAL);
    saga_breaker_free(b);
    saga_breaker_free(NULL);
}

static void test_bulkhead(void **state)
{
    saga_bulkhead *h;
    (void)state;
    assert_int_equal(saga_bulkhead_new(-1, 0, &h), SAGA_EINVAL);
    assert_null(h);
    assert_int_equal(saga_bulkhead_new(2, 0, &h), SAGA_OK);
    assert_int_equal(saga_bulkhead_limit(h, "a"), 2);
    assert_int_equal(saga_bulkhead_acquire(h, "a"), SAGA_OK);
    assert_int_equal(saga_bulkhead_acquire(h, "a"), SAGA_OK);
    assert_int_equal(saga_bulkhead_acquire(h, "a"), SAGA_ESTATE);
    assert_int_equal(saga_bulkhead_in_flight(h, "a"), 2);
    assert_int_equal(saga_bulkhead_acquire(h, "b"), SAGA_OK); /* independent */
    assert_int_equal(saga_bulkhead_release(h, "a"), SAGA_OK);
    assert_int_equal(saga_bulkhead_acquire(h, "a"), SAGA_OK);
    /* An own limit, lowered below what is in flight: no new slot until
     * enough are released. */
    assert_int_equal(saga_bulkhead_set_limit(h, "a", 1), SAGA_OK);
    assert_int_equal(saga_bulkhead_limit(h, "a"), 1);
    assert_int_equal(saga_bulkhead_acquire(h, "a"), SAGA_ESTATE);
    assert_int_equal(saga_bulkhead_release(h, "a"), SAGA_OK);
    assert_int_equal(saga_bulkhead_acquire(h, "a"), SAGA_ESTATE);
    assert_int_equal(saga_bulkhead_release(h, "a"), SAGA_OK);
    assert_int_equal(saga_bulkhead_acquire(h, "a"), SAGA_OK);
    /* 0 = unlimited. */
    assert_int_equal(saga_bulkhead_set_limit(h, "c", 0), SAGA_OK);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(saga_bulkhead_acquire(h, "c"), SAGA_OK);
    assert_int_equal(saga_bulkhead_in_flight(h, "c"), 1000);
    /* Double release and unknown services are refused, not counted below 0. */
    assert_int_equal(saga_bulkhead_release(h, "b"), SAGA_OK);
    assert_int_equal(saga_bulkhead_release(h, "b"), SAGA_ESTATE);
    assert_int_equal(saga_bulkhead_release(h, "zzz"), SAGA_ESTATE);
    assert_int_equal(saga_bulkhead_in_flight(h, "zzz"), 0);
    assert_int_equal(saga_bulkhead_set_limit(h, "a", -1), SAGA_EINVAL);
    assert_int_equal(saga_bulkhead_acquire(NULL, "a"), SAGA_EINVAL);
    assert_int_equal(saga_bulkhead_release(h, NULL), SAGA_EINVAL);
    saga_bulkhead_free(h);
    saga_bulkhead_free(NULL);
}

static void test_bulkhead_bounded(void **state)
{
    saga_bulkhead *h;
    (void)state;
    assert_int_equal(saga_bulkhead_new(0, 2, &h), SAGA_OK);
    assert_int_equal(saga_bulkhead_acquire(h, "a"), SAGA_OK);
    assert_int_equal(saga_bulkhead_acquire(h, "b"), SAGA_OK);
    assert_int_equal(saga_bulkhead_acquire(h, "c"), SAGA_ENOMEM);
    assert_int_equal(saga_bulkhead_release(h, "a"), SAGA_OK);
    /* a holds nothing now: its slot is reused. */
    assert_int_equal(saga_bulkhead_acquire(h, "c"), SAGA_OK);
    assert_int_equal(saga_bulkhead_in_flight(h, "c"), 1);
    assert_int_equal(saga_bulkhead_in_flight(h, "a"), 0);
    saga_bulkhead_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_event_table),
        cmocka_unit_test(test_single_probe),
        cmocka_unit_test(test_cooldown_grows_and_resets),
        cmocka_unit_test(test_failures_must_be_consecutive),
        cmocka_unit_test(test_bounded_services),
        cmocka_unit_test(test_foreach_and_names),
        cmocka_unit_test(test_breaker_misuse),
        cmocka_unit_test(test_bulkhead),
        cmocka_unit_test(test_bulkhead_bounded),
    };
    return cmocka_run_group_tests_name("circuit breaker and bulkhead", tests, NULL, NULL);
}
