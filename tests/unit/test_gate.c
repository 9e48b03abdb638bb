/* The dispatch gate: breaker and bulkhead decisions, transactions, expiry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "saga_gate.h"

#define T0 1700000000000LL

static saga_gate *gate(int threshold, int64_t cooldown, int max, const char *limits)
{
    saga_gate_config cfg = {0};
    saga_gate *g = NULL;
    saga_error err = {0};
    cfg.breaker.failure_threshold = threshold;
    cfg.breaker.cooldown_ms = cooldown;
    cfg.breaker.cooldown_factor = 1;
    cfg.max_in_flight = max;
    cfg.service_limits = limits;
    cfg.recheck_ms = 1000;
    assert_int_equal(saga_gate_new(&cfg, &g, &err), SAGA_OK);
    return g;
}

typedef struct seen {
    char service[32];
    saga_gate_info info;
} seen;

static void visit(const char *service, const saga_gate_info *info, void *arg)
{
    seen *s = arg;
    if (strcmp(service, s->service) == 0)
        s->info = *info;
}

static saga_gate_info info_of(saga_gate *g, const char *service, int64_t now)
{
    seen s = {{0}, {{0}, 0, 0, 0, 0}};
    snprintf(s.service, sizeof s.service, "%s", service);
    s.info.in_flight = -1;
    saga_gate_foreach(g, now, visit, &s);
    /* Not found would read as closed with no failures: say so instead. */
    if (s.info.in_flight < 0)
        fail_msg("service %s is not in the gate", service);
    return s.info;
}

static void fail_n(saga_gate *g, const char *svc, int n, int64_t now)
{
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "f%d", i);
        assert_int_equal(saga_gate_settle(g, svc, id,
                                          i % 2 ? SAGA_GATE_TIMEOUT : SAGA_GATE_RETRY,
                                          now),
                         SAGA_OK);
    }
    saga_gate_commit(g, now);
}

static void test_breaker_opens_holds_probes_and_closes(void **state)
{
    saga_gate *g = gate(3, 10000, 0, NULL);
    int64_t until = 0;
    (void)state;
    assert_int_equal(saga_gate_admit(g, "pay", "c1", T0 + 5000, T0, 0.0, &until),
                     SAGA_GATE_SEND);
    saga_gate_commit(g, T0);
    fail_n(g, "pay", 2, T0 + 1);
    assert_int_equal(info_of(g, "pay", T0 + 1).breaker.state, SAGA_BREAKER_CLOSED);
    fail_n(g, "pay", 1, T0 + 2);
    assert_int_equal(info_of(g, "pay", T0 + 2).breaker.state, SAGA_BREAKER_OPEN);
    /* Open: held until the cool-down ends (plus a spread), other services go. */
    assert_int_equal(saga_gate_admit(g, "pay", "c2", 0, T0 + 100, 0.0, &until),
                     SAGA_GATE_HOLD_BREAKER);
    assert_int_equal(until, T0 + 2 + 10000);
    assert_int_equal(saga_gate_admit(g, "pay", "c3", 0, T0 + 100, 0.99, &until),
                     SAGA_GATE_HOLD_BREAKER);
    assert_true(until > T0 + 10002 && until <= T0 + 10002 + 500);
    assert_int_equal(saga_gate_admit(g, "stock", "c4", 0, T0 + 100, 0.0, &until),
                     SAGA_GATE_SEND);
    saga_gate_commit(g, T0 + 100);
    /* Cool-down over: one probe, the rest held briefly. */
    assert_int_equal(saga_gate_admit(g, "pay", "c2", 0, T0 + 10002, 0.0, &until),
                     SAGA_GATE_SEND);
    saga_gate_commit(g, T0 + 10002);
    assert_int_equal(saga_gate_admit(g, "pay", "c3", 0, T0 + 10003, 0.0, &until),
                     SAGA_GATE_HOLD_BREAKER);
    assert_int_equal(until, T0 + 10003 + 1000);
    assert_int_equal(info_of(g, "pay", T0 + 10003).breaker.state, SAGA_BREAKER_HALF_OPEN);
    assert_int_equal(info_of(g, "pay", T0 + 10003).held_breaker, 3);
    /* The probe is answered: closed, everything flows. */
    saga_gate_settle(g, "pay", "c2", SAGA_GATE_ANSWERED, T0 + 10050);
    assert_int_equal(info_of(g, "pay", T0 + 10050).breaker.state,
                     SAGA_BREAKER_HALF_OPEN); /* not before the commit */
    saga_gate_commit(g, T0 + 10050);
    assert_int_equal(info_of(g, "pay", T0 + 10050).breaker.state, SAGA_BREAKER_CLOSED);
    assert_int_equal(saga_gate_admit(g, "pay", "c3", 0, T0 + 10060, 0.0, &until),
                     SAGA_GATE_SEND);
    saga_gate_commit(g, T0 + 10060);
    saga_gate_free(g);
}

static void test_failed_probe_reopens_and_rollback_gives_the_probe_back(void **state)
{
    saga_gate *g = gate(1, 1000, 0, NULL);
    int64_t until = 0;
    (void)state;
    fail_n(g, "pay", 1, T0);
    assert_int_equal(info_of(g, "pay", T0).breaker.state, SAGA_BREAKER_OPEN);
    /* A probe admitted in a transaction that rolls back was never sent. */
    assert_int_equal(saga_gate_admit(g, "pay", "p1", 0, T0 + 1000, 0.0, &until),
                     SAGA_GATE_SEND);
    saga_gate_abort(g, T0 + 1000);
    assert_int_equal(saga_gate_admit(g, "pay", "p2", 0, T0 + 1001, 0.0, &until),
                     SAGA_GATE_SEND);
    saga_gate_commit(g, T0 + 1001);
    saga_gate_settle(g, "pay", "p2", SAGA_GATE_TIMEOUT, T0 + 2000);
    saga_gate_commit(g, T0 + 2000);
    assert_int_equal(info_of(g, "pay", T0 + 2000).breaker.state, SAGA_BREAKER_OPEN);
    assert_int_equal(info_of(g, "pay", T0 + 2000).breaker.opened_total, 2);
    /* Settlements of a rolled-back transaction are forgotten. */
    saga_gate_settle(g, "pay", "x", SAGA_GATE_ANSWERED, T0 + 3000);
    saga_gate_abort(g, T0 + 3000);
    assert_int_equal(info_of(g, "pay", T0 + 3000).breaker.state, SAGA_BREAKER_HALF_OPEN);
    saga_gate_free(g);
}

static void test_bulkhead_caps_each_service_on_its_own(void **state)
{
    saga_gate *g = gate(0, 0, 0, "slow=2,fast=0");
    int64_t until = 0;
    (void)state;
    assert_int_equal(saga_gate_admit(g, "slow", "s1", T0 + 5000, T0, 0.0, &until),
                     SAGA_GATE_SEND);
    assert_int_equal(saga_gate_admit(g, "slow", "s2", T0 + 5000, T0, 0.0, &until),
                     SAGA_GATE_SEND);
    /* Within the same transaction the third already sees two taken. */
    assert_int_equal(saga_gate_admit(g, "slow", "s3", T0 + 5000, T0, 0.0, &until),
                     SAGA_GATE_HOLD_BULKHEAD);
    assert_int_equal(until, T0 + 1000);
    /* The same command again (a retry) keeps its slot. */
    assert_int_equal(saga_gate_admit(g, "slow", "s1", T0 + 6000, T0, 0.0, &until),
                     SAGA_GATE_SEND);
    for (int i = 0; i < 100; i++) {
        char id[16];
        snprintf(id, sizeof id, "q%d", i);
        assert_int_equal(saga_gate_admit(g, "fast", id, 0, T0, 0.0, &until),
                         SAGA_GATE_SEND);
    }
    saga_gate_commit(g, T0);
    assert_int_equal(info_of(g, "slow", T0).in_flight, 2);
    assert_int_equal(info_of(g, "slow", T0).limit, 2);
    assert_int_equal(info_of(g, "slow", T0).held_bulkhead, 1);
    assert_int_equal(info_of(g, "fast", T0).in_flight, 0);
    /* A reply frees a slot (on commit); a reply for an unknown id frees none. */
    saga_gate_settle(g, "slow", "s2", SAGA_GATE_ANSWERED, T0 + 10);
    saga_gate_settle(g, "slow", "zz", SAGA_GATE_ANSWERED, T0 + 10);
    assert_int_equal(saga_gate_admit(g, "slow", "s3", 0, T0 + 10, 0.0, &until),
                     SAGA_GATE_HOLD_BULKHEAD);
    saga_gate_commit(g, T0 + 10);
    assert_int_equal(info_of(g, "slow", T0 + 10).in_flight, 1);
    assert_int_equal(saga_gate_admit(g, "slow", "s3", T0 + 5000, T0 + 20, 0.0, &until),
                     SAGA_GATE_SEND);
    /* Rolled back: the slot is given back. */
    saga_gate_abort(g, T0 + 20);
    assert_int_equal(info_of(g, "slow", T0 + 20).in_flight, 1);
    /* s1's deadline (6000) + grace (2000) passes: freed without a reply. */
    assert_int_equal(saga_gate_expire(g, T0 + 7999), 0);
    assert_int_equal(saga_gate_expire(g, T0 + 8000), 1);
    assert_int_equal(info_of(g, "slow", T0 + 8000).in_flight, 0);
    saga_gate_free(g);
}

static void test_held_sagas_are_handed_back_as_slots_free(void **state)
{
    saga_gate *g = gate(0, 0, 0, "slow=1");
    char ids[8][37];
    int64_t untils[8], until = 0;
    (void)state;
    assert_int_equal(saga_gate_admit(g, "slow", "a/0/invoke", 0, T0, 0.0, &until),
                     SAGA_GATE_SEND);
    assert_int_equal(saga_gate_admit(g, "slow", "b/0/invoke", 0, T0, 0.0, &until),
                     SAGA_GATE_HOLD_BULKHEAD);
    assert_int_equal(saga_gate_note_held(g, "slow", "b", until), SAGA_OK);
    assert_int_equal(saga_gate_note_held(g, "slow", "c", until + 1), SAGA_OK);
    /* Not before the transaction commits. */
    assert_int_equal(saga_gate_take_wakeable(g, ids, untils, 8), 0);
    saga_gate_commit(g, T0);
    /* No free slot yet. */
    assert_int_equal(saga_gate_take_wakeable(g, ids, untils, 8), 0);
    saga_gate_settle(g, "slow", "a/0/invoke", SAGA_GATE_ANSWERED, T0 + 5);
    saga_gate_commit(g, T0 + 5);
    /* One slot: the first held comes back, the second waits. */
    assert_int_equal(saga_gate_take_wakeable(g, ids, untils, 8), 1);
    assert_string_equal(ids[0], "b");
    assert_int_equal(untils[0], until);
    assert_int_equal(saga_gate_take_wakeable(g, ids, untils, 8), 1);
    assert_string_equal(ids[0], "c");
    assert_int_equal(saga_gate_take_wakeable(g, ids, untils, 8), 0);
    /* Holds of a rolled-back transaction are forgotten. */
    assert_int_equal(saga_gate_note_held(g, "slow", "d", until), SAGA_OK);
    saga_gate_abort(g, T0 + 6);
    assert_int_equal(saga_gate_take_wakeable(g, ids, untils, 8), 0);
    /* Bounded: the oldest beyond 1024 are dropped. */
    for (int i = 0; i < 1100; i++) {
        char id[16];
        snprintf(id, sizeof id, "s%d", i);
        saga_gate_note_held(g, "slow", id, i);
    }
    saga_gate_commit(g, T0 + 7);
    assert_int_equal(saga_gate_take_wakeable(g, ids, untils, 8), 1);
    assert_string_equal(ids[0], "s76");
    assert_int_equal(
        saga_gate_note_held(g, "slow", "0123456789012345678901234567890123456", 0),
        SAGA_EINVAL);
    saga_gate_free(g);
}

static void test_default_cap_many_slots_and_timeouts(void **state)
{
    saga_gate *g = gate(0, 0, 500, NULL);
    int64_t until = 0;
    char id[32];
    (void)state;
    for (int i = 0; i < 500; i++) {
        snprintf(id, sizeof id, "saga-%d/0/invoke", i);
        assert_int_equal(saga_gate_admit(g, "svc", id, T0 + 1000, T0, 0.5, &until),
                         SAGA_GATE_SEND);
    }
    saga_gate_commit(g, T0);
    assert_int_equal(saga_gate_admit(g, "svc", "one-more", 0, T0, 0.5, &until),
                     SAGA_GATE_HOLD_BULKHEAD);
    assert_int_equal(until, T0 + 1000 + 250);
    for (int i = 0; i < 500; i += 2) {
        snprintf(id, sizeof id, "saga-%d/0/invoke", i);
        saga_gate_settle(g, "svc", id, SAGA_GATE_TIMEOUT, T0 + 1000);
    }
    saga_gate_commit(g, T0 + 1000);
    assert_int_equal(info_of(g, "svc", T0).in_flight, 250);
    assert_int_equal(saga_gate_expire(g, T0 + 3000), 250);
    assert_int_equal(info_of(g, "svc", T0).in_flight, 0);
    saga_gate_free(g);
}

/* A command the broker refused as too large never reached the service:
 * settled UNSENT it frees its bulkhead slot and tells the breaker nothing
 * (no failure toward opening it; a half-open probe is given back). */
static void test_unsent_commands_do_not_judge_the_service(void **state)
{
    saga_gate *g = gate(2, 1000, 1, NULL);
    int64_t until = 0;
    (void)state;
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "big%d", i);
        assert_int_equal(saga_gate_admit(g, "use", id, T0 + 60000, T0 + i, 0.0, &until),
                         SAGA_GATE_SEND);
        saga_gate_commit(g, T0 + i);
        assert_int_equal(info_of(g, "use", T0 + i).in_flight, 1);
        assert_int_equal(saga_gate_settle(g, "use", id, SAGA_GATE_UNSENT, T0 + i),
                         SAGA_OK);
        saga_gate_commit(g, T0 + i);
        assert_int_equal(info_of(g, "use", T0 + i).in_flight, 0);
    }
    assert_int_equal(info_of(g, "use", T0 + 10).breaker.state, SAGA_BREAKER_CLOSED);
    assert_int_equal(info_of(g, "use", T0 + 10).breaker.consecutive_failures, 0);
    /* Open it with real failures; the probe comes back unsent: the next
     * command may probe at once, the breaker neither closes nor re-opens. */
    fail_n(g, "use", 2, T0 + 20);
    assert_int_equal(info_of(g, "use", T0 + 20).breaker.state, SAGA_BREAKER_OPEN);
    assert_int_equal(saga_gate_admit(g, "use", "probe", 0, T0 + 1020, 0.0, &until),
                     SAGA_GATE_SEND);
    saga_gate_commit(g, T0 + 1020);
    saga_gate_settle(g, "use", "probe", SAGA_GATE_UNSENT, T0 + 1021);
    saga_gate_commit(g, T0 + 1021);
    assert_int_equal(info_of(g, "use", T0 + 1021).breaker.state, SAGA_BREAKER_HALF_OPEN);
    assert_int_equal(info_of(g, "use", T0 + 1021).breaker.opened_total, 1);
    assert_int_equal(saga_gate_admit(g, "use", "probe2", 0, T0 + 1022, 0.0, &until),
                     SAGA_GATE_SEND);
    saga_gate_commit(g, T0 + 1022);
    saga_gate_free(g);
}

static void test_configuration_errors_and_misuse(void **state)
{
    saga_gate_config cfg = {0};
    saga_gate *g = NULL;
    saga_error err = {0};
    int64_t until = 0;
    (void)state;
    cfg.service_limits = "pay=x";
    assert_int_equal(saga_gate_new(&cfg, &g, &err), SAGA_EINVAL);
    assert_null(g);
    assert_non_null(strstr(err.message, "pay"));
    cfg.service_limits = "=3";
    assert_int_equal(saga_gate_new(&cfg, &g, &err), SAGA_EINVAL);
    assert_non_null(strstr(err.message, "SERVICE=N"));
    cfg.service_limits = "pay=-1";
    assert_int_equal(saga_gate_new(&cfg, &g, &err), SAGA_EINVAL);
    cfg.service_limits = NULL;
    cfg.max_in_flight = -2;
    assert_int_equal(saga_gate_new(&cfg, &g, &err), SAGA_EINVAL);
    assert_int_equal(saga_gate_new(NULL, &g, &err), SAGA_OK);
    assert_int_equal(saga_gate_admit(g, NULL, "x", 0, T0, 0.0, &until), SAGA_GATE_SEND);
    assert_int_equal(saga_gate_admit(NULL, "a", "x", 0, T0, 0.0, &until), SAGA_GATE_SEND);
    assert_int_equal(saga_gate_settle(g, "a", NULL, SAGA_GATE_ANSWERED, T0), SAGA_EINVAL);
    assert_int_equal(saga_gate_settle(g, "a", "x", (saga_gate_outcome)9, T0),
                     SAGA_EINVAL);
    saga_gate_commit(NULL, T0);
    saga_gate_abort(NULL, T0);
    assert_int_equal(saga_gate_expire(NULL, T0), 0);
    saga_gate_free(g);
    saga_gate_free(NULL);
    /* Breaker off: failures never hold anything. */
    cfg.max_in_flight = 0;
    cfg.breaker_off = 1;
    assert_int_equal(saga_gate_new(&cfg, &g, &err), SAGA_OK);
    fail_n(g, "pay", 50, T0);
    assert_int_equal(saga_gate_admit(g, "pay", "x", 0, T0, 0.0, &until), SAGA_GATE_SEND);
    saga_gate_commit(g, T0);
    saga_gate_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_breaker_opens_holds_probes_and_closes),
        cmocka_unit_test(test_failed_probe_reopens_and_rollback_gives_the_probe_back),
        cmocka_unit_test(test_bulkhead_caps_each_service_on_its_own),
        cmocka_unit_test(test_held_sagas_are_handed_back_as_slots_free),
        cmocka_unit_test(test_default_cap_many_slots_and_timeouts),
        cmocka_unit_test(test_unsent_commands_do_not_judge_the_service),
        cmocka_unit_test(test_configuration_errors_and_misuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
