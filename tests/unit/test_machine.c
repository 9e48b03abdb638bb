/* The pure state machine: scenarios and an exhaustive table of
 * (saga status x step status x event). No server, no clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "saga_definition.h"
#include "saga_machine.h"

#define T0 1700000000000LL
#define ID "6f1c2f7e-8a1b-4c3d-9e2f-0123456789ab"

/* Three compensatable steps; policy without jitter so delays are exact. */
static const char *const three_steps =
    "{\"name\":\"t\",\"defaults\":{\"timeout\":\"1s\",\"retry\":{\"max_attempts\":3,"
    "\"backoff\":\"100ms\",\"max_backoff\":\"1s\",\"multiplier\":2,\"jitter\":0},"
    "\"compensation_retry\":{\"max_attempts\":2,\"backoff\":\"100ms\",\"max_backoff\":"
    "\"1s\","
    "\"jitter\":0}},"
    "\"steps\":["
    "{\"name\":\"a\",\"service\":\"s1\",\"action\":\"do_a\",\"compensation\":\"undo_a\","
    " \"input\":{\"x\":\"${input.x}\"}},"
    "{\"name\":\"b\",\"service\":\"s2\",\"action\":\"do_b\",\"compensation\":\"undo_b\","
    " \"input\":{\"from_a\":\"${steps.a.output.id}\"}},"
    "{\"name\":\"c\",\"service\":\"s3\",\"action\":\"do_c\",\"compensation\":\"undo_c\"}]"
    "}";

static saga_definition *parse(const char *json)
{
    saga_definition *def = NULL;
    saga_def_problems probs = {0};
    int rc = saga_definition_parse(json, strlen(json), &def, &probs);
    if (rc != SAGA_OK)
        fail_msg("definition invalid: %s: %s", probs.items[0].where,
                 probs.items[0].message);
    def->version = 1;
    return def;
}

typedef struct fixture {
    saga_definition *def;
    saga_state *s;
    saga_actions acts;
    const char *reason;
} fixture;

static fixture *fx_new(const char *json)
{
    fixture *f = calloc(1, sizeof *f);
    json_t *input = json_pack("{s:i}", "x", 7);
    f->def = parse(json);
    f->s = saga_state_new(f->def, ID, input);
    json_decref(input);
    return f;
}

static void fx_free(fixture *f)
{
    saga_actions_clear(&f->acts);
    saga_state_free(f->s);
    saga_definition_free(f->def);
    free(f);
}

static int apply(fixture *f, saga_event_kind kind, int64_t now, const saga_reply *r)
{
    saga_event ev = {.kind = kind, .now = now, .random = 0.5, .reply = r};
    saga_actions_clear(&f->acts);
    return saga_machine_apply(f->s, &ev, &f->acts, &f->reason);
}

static int reply(fixture *f, int step, saga_phase phase, saga_reply_status st,
                 int attempt, int64_t now)
{
    char cid[128];
    saga_reply r = {0};
    int rc;
    saga_command_id_format(cid, sizeof cid, ID, step, phase);
    memcpy(r.saga_id, ID, sizeof r.saga_id);
    r.step = step;
    r.phase = phase;
    r.command_id = cid;
    r.attempt = attempt;
    r.status = st;
    if (st == SAGA_REPLY_OK)
        r.output = json_pack("{s:s}", "id", "out-1");
    else {
        r.error_code = st == SAGA_REPLY_FAILED ? "nope" : "busy";
        r.error_message = "because";
    }
    rc = apply(f, SAGA_EV_REPLY, now, &r);
    json_decref(r.output);
    return rc;
}

/* The n-th SEND action of the last apply, or NULL. */
static const saga_action *send_n(const fixture *f, int n)
{
    for (int i = 0; i < f->acts.n; i++)
        if (f->acts.items[i].kind == SAGA_ACT_SEND && n-- == 0)
            return &f->acts.items[i];
    return NULL;
}

static int count_sends(const fixture *f)
{
    int n = 0;
    for (int i = 0; i < f->acts.n; i++)
        n += f->acts.items[i].kind == SAGA_ACT_SEND;
    return n;
}

static int has_history(const fixture *f, const char *what)
{
    for (int i = 0; i < f->acts.n; i++)
        if (f->acts.items[i].kind == SAGA_ACT_HISTORY &&
            strcmp(saga_history_kind_name(f->acts.items[i].what), what) == 0)
            return 1;
    return 0;
}

static const saga_action *history(const fixture *f, const char *what)
{
    for (int i = 0; i < f->acts.n; i++)
        if (f->acts.items[i].kind == SAGA_ACT_HISTORY &&
            strcmp(saga_history_kind_name(f->acts.items[i].what), what) == 0)
            return &f->acts.items[i];
    return NULL;
}

static void expect_send(const fixture *f, int step, saga_phase phase, int attempt)
{
    const saga_action *a = send_n(f, 0);
    assert_non_null(a);
    assert_int_equal(count_sends(f), 1);
    assert_int_equal(a->step, step);
    assert_int_equal(a->phase, phase);
    assert_int_equal(a->attempt, attempt);
}

/* ---- scenarios ---- */

static void test_start_dispatches_first_step(void **state)
{
    fixture *f = fx_new(three_steps);
    const saga_action *a;
    (void)state;
    assert_int_equal(apply(f, SAGA_EV_START, T0, NULL), SAGA_APPLIED);
    assert_int_equal(f->s->status, SAGA_ST_RUNNING);
    expect_send(f, 0, SAGA_PHASE_INVOKE, 1);
    a = send_n(f, 0);
    assert_int_equal(a->deadline, T0 + 1000);
    assert_int_equal(json_integer_value(json_object_get(a->payload, "x")), 7);
    assert_true(has_history(f, "saga_started"));
    assert_true(has_history(f, "step_dispatched"));
    assert_int_equal(f->s->steps[0].status, SAGA_STEP_DISPATCHED);
    assert_int_equal(f->s->wake_at, T0 + 1000);
    /* A second start is refused and changes nothing. */
    assert_int_equal(apply(f, SAGA_EV_START, T0 + 5, NULL), SAGA_REJECTED);
    assert_non_null(f->reason);
    assert_int_equal(f->acts.n, 0);
    fx_free(f);
}

static void test_happy_path_completes(void **state)
{
    fixture *f = fx_new(three_steps);
    const saga_action *a;
    (void)state;
    apply(f, SAGA_EV_START, T0, NULL);
    assert_int_equal(reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 10),
                     SAGA_APPLIED);
    expect_send(f, 1, SAGA_PHASE_INVOKE, 1);
    /* b's input is resolved from a's output, keeping its type. */
    a = send_n(f, 0);
    assert_string_equal(json_string_value(json_object_get(a->payload, "from_a")),
                        "out-1");
    assert_int_equal(reply(f, 1, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 20),
                     SAGA_APPLIED);
    expect_send(f, 2, SAGA_PHASE_INVOKE, 1);
    assert_int_equal(reply(f, 2, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 30),
                     SAGA_APPLIED);
    assert_int_equal(count_sends(f), 0);
    assert_int_equal(f->s->status, SAGA_ST_COMPLETED);
    assert_true(has_history(f, "saga_completed"));
    assert_int_equal(f->s->wake_at, 0);
    /* Anything after the end is ignored. */
    assert_int_equal(reply(f, 2, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 40),
                     SAGA_IGNORED);
    assert_int_equal(apply(f, SAGA_EV_WAKE, T0 + 100000, NULL), SAGA_IGNORED);
    fx_free(f);
}

static void test_failure_at_second_step_compensates_first(void **state)
{
    fixture *f = fx_new(three_steps);
    (void)state;
    apply(f, SAGA_EV_START, T0, NULL);
    reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 10);
    assert_int_equal(reply(f, 1, SAGA_PHASE_INVOKE, SAGA_REPLY_FAILED, 1, T0 + 20),
                     SAGA_APPLIED);
    assert_int_equal(f->s->status, SAGA_ST_COMPENSATING);
    assert_int_equal(f->s->steps[1].status, SAGA_STEP_FAILED);
    expect_send(f, 0, SAGA_PHASE_COMPENSATE, 1);
    /* The compensation sees the step's input and output. */
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(send_n(f, 0)->payload, "output"), "id")),
                        "out-1");
    assert_int_equal(reply(f, 0, SAGA_PHASE_COMPENSATE, SAGA_REPLY_OK, 1, T0 + 30),
                     SAGA_APPLIED);
    assert_int_equal(f->s->status, SAGA_ST_COMPENSATED);
    assert_int_equal(f->s->steps[0].status, SAGA_STEP_COMPENSATED);
    assert_int_equal(f->s->steps[1].status,
                     SAGA_STEP_FAILED); /* definite: not compensated */
    assert_int_equal(f->s->steps[2].status, SAGA_STEP_PENDING);
    assert_int_equal(f->s->wake_at, 0);
    fx_free(f);
}

static void test_failure_at_third_step_compensates_in_reverse(void **state)
{
    fixture *f = fx_new(three_steps);
    (void)state;
    apply(f, SAGA_EV_START, T0, NULL);
    reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 10);
    reply(f, 1, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 20);
    reply(f, 2, SAGA_PHASE_INVOKE, SAGA_REPLY_FAILED, 1, T0 + 30);
    expect_send(f, 1, SAGA_PHASE_COMPENSATE, 1);
    /* A reply to the first compensation that is not outstanding yet is stale. */
    assert_int_equal(reply(f, 0, SAGA_PHASE_COMPENSATE, SAGA_REPLY_OK, 1, T0 + 35),
                     SAGA_IGNORED);
    reply(f, 1, SAGA_PHASE_COMPENSATE, SAGA_REPLY_OK, 1, T0 + 40);
    expect_send(f, 0, SAGA_PHASE_COMPENSATE, 1);
    reply(f, 0, SAGA_PHASE_COMPENSATE, SAGA_REPLY_OK, 1, T0 + 50);
    assert_int_equal(f->s->status, SAGA_ST_COMPENSATED);
    fx_free(f);
}

static void test_backoff(void **state)
{
    saga_retry_policy p = {5, 100, 1000, 2.0, 0.0};
    saga_retry_policy j = {5, 100, 1000, 2.0, 0.5};
    (void)state;
    assert_int_equal(saga_backoff_ms(&p, 1, 0.3), 100);
    assert_int_equal(saga_backoff_ms(&p, 2, 0.3), 200);
    assert_int_equal(saga_backoff_ms(&p, 3, 0.3), 400);
    assert_int_equal(saga_backoff_ms(&p, 5, 0.3), 1000); /* capped */
    assert_int_equal(saga_backoff_ms(&p, 50, 0.3), 1000);
    /* random 0.5 is the middle: no change; 0 and ~1 are -/+ jitter. */
    assert_int_equal(saga_backoff_ms(&j, 1, 0.5), 100);
    assert_int_equal(saga_backoff_ms(&j, 1, 0.0), 50);
    assert_true(saga_backoff_ms(&j, 1, 0.999) >= 149);
}

static void test_retry_reply_backs_off_then_resends_same_command(void **state)
{
    fixture *f = fx_new(three_steps);
    (void)state;
    apply(f, SAGA_EV_START, T0, NULL);
    assert_int_equal(reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_RETRY, 1, T0 + 10),
                     SAGA_APPLIED);
    assert_int_equal(count_sends(f), 0);
    assert_true(has_history(f, "attempt_failed"));
    assert_true(has_history(f, "retry_scheduled"));
    assert_int_equal(f->s->wake_at, T0 + 10 + 100);
    assert_int_equal(apply(f, SAGA_EV_WAKE, T0 + 50, NULL), SAGA_IGNORED); /* not due */
    assert_int_equal(apply(f, SAGA_EV_WAKE, T0 + 110, NULL), SAGA_APPLIED);
    expect_send(f, 0, SAGA_PHASE_INVOKE, 2);
    /* Second retry waits twice as long. */
    reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_RETRY, 2, T0 + 120);
    assert_int_equal(f->s->wake_at, T0 + 120 + 200);
    /* A retry reply for an older attempt is stale. */
    assert_int_equal(reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_RETRY, 1, T0 + 130),
                     SAGA_IGNORED);
    /* A late ok for an older attempt of the same command is the answer. */
    assert_int_equal(reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 140),
                     SAGA_APPLIED);
    assert_int_equal(f->s->steps[0].status, SAGA_STEP_SUCCEEDED);
    expect_send(f, 1, SAGA_PHASE_INVOKE, 1);
    fx_free(f);
}

/* A step's error is its current phase's: an attempt that failed and a
 * later one that succeeded leave no error on the step (sagactl show once
 * printed the stale one for a compensated step), nor does an unknown
 * outcome once its compensation starts; the history keeps every one. */
static void test_error_belongs_to_the_current_phase(void **state)
{
    fixture *f = fx_new(three_steps);
    int64_t now = T0;
    (void)state;
    apply(f, SAGA_EV_START, now, NULL);
    reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_RETRY, 1, now += 10);
    assert_string_equal(json_string_value(json_object_get(f->s->steps[0].error, "code")),
                        "busy");
    apply(f, SAGA_EV_WAKE, now = f->s->wake_at, NULL);
    expect_send(f, 0, SAGA_PHASE_INVOKE, 2);
    /* Still retrying: the last error is the step's. */
    assert_non_null(f->s->steps[0].error);
    assert_int_equal(reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 2, now += 10),
                     SAGA_APPLIED);
    assert_int_equal(f->s->steps[0].status, SAGA_STEP_SUCCEEDED);
    assert_null(f->s->steps[0].error);
    assert_int_equal(f->s->steps[0].dirty, 1); /* so the store clears the column */
    /* Step b times out 3 times: unknown, with the timeout as its error
     * until its compensation starts. */
    for (int attempt = 1; attempt <= 3; attempt++) {
        apply(f, SAGA_EV_WAKE, now = f->s->wake_at, NULL);
        if (attempt < 3)
            apply(f, SAGA_EV_WAKE, now = f->s->wake_at, NULL);
    }
    assert_true(has_history(f, "step_outcome_unknown"));
    assert_int_equal(f->s->steps[1].status, SAGA_STEP_COMPENSATING);
    assert_null(f->s->steps[1].error);
    /* Its compensation fails once, then succeeds: no error left. */
    reply(f, 1, SAGA_PHASE_COMPENSATE, SAGA_REPLY_RETRY, 1, now += 10);
    assert_non_null(f->s->steps[1].error);
    apply(f, SAGA_EV_WAKE, now = f->s->wake_at, NULL);
    reply(f, 1, SAGA_PHASE_COMPENSATE, SAGA_REPLY_OK, 2, now += 10);
    assert_int_equal(f->s->steps[1].status, SAGA_STEP_COMPENSATED);
    assert_null(f->s->steps[1].error);
    /* Step a, compensated at once, never had an error in that phase. */
    reply(f, 0, SAGA_PHASE_COMPENSATE, SAGA_REPLY_OK, 1, now += 10);
    assert_int_equal(f->s->status, SAGA_ST_COMPENSATED);
    assert_int_equal(f->s->steps[0].status, SAGA_STEP_COMPENSATED);
    assert_null(f->s->steps[0].error);
    fx_free(f);
}

static void test_retry_after_hint_is_respected(void **state)
{
    fixture *f = fx_new(three_steps);
    char cid[128];
    saga_reply r = {0};
    (void)state;
    apply(f, SAGA_EV_START, T0, NULL);
    saga_command_id_format(cid, sizeof cid, ID, 0, SAGA_PHASE_INVOKE);
    memcpy(r.saga_id, ID, sizeof r.saga_id);
    r.command_id = cid;
    r.attempt = 1;
    r.status = SAGA_REPLY_RETRY;
    r.retry_after = 5000;
    assert_int_equal(apply(f, SAGA_EV_REPLY, T0 + 10, &r), SAGA_APPLIED);
    assert_int_equal(f->s->wake_at, T0 + 10 + 5000);
    fx_free(f);
}

static void test_timeouts_exhausted_make_outcome_unknown_and_compensate_it(void **state)
{
    fixture *f = fx_new(three_steps);
    int64_t now = T0;
    (void)state;
    apply(f, SAGA_EV_START, now, NULL);
    reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, now += 10);
    /* Step b never answers: 3 attempts, each timing out. */
    for (int attempt = 1; attempt <= 3; attempt++) {
        now = f->s->wake_at;
        assert_int_equal(apply(f, SAGA_EV_WAKE, now, NULL), SAGA_APPLIED);
        assert_true(has_history(f, "attempt_timed_out"));
        if (attempt < 3) {
            now = f->s->wake_at;
            assert_int_equal(apply(f, SAGA_EV_WAKE, now, NULL), SAGA_APPLIED);
            expect_send(f, 1, SAGA_PHASE_INVOKE, attempt + 1);
        }
    }
    assert_int_equal(f->s->steps[1].status, SAGA_STEP_COMPENSATING);
    assert_true(has_history(f, "step_outcome_unknown"));
    /* The unknown step is compensated first, then the one before it. */
    expect_send(f, 1, SAGA_PHASE_COMPENSATE, 1);
    reply(f, 1, SAGA_PHASE_COMPENSATE, SAGA_REPLY_OK, 1, now += 10);
    expect_send(f, 0, SAGA_PHASE_COMPENSATE, 1);
    reply(f, 0, SAGA_PHASE_COMPENSATE, SAGA_REPLY_OK, 1, now += 10);
    assert_int_equal(f->s->status, SAGA_ST_COMPENSATED);
    fx_free(f);
}

static void test_compensation_exhausted_gets_stuck(void **state)
{
    fixture *f = fx_new(three_steps);
    int64_t now = T0;
    const saga_action *h;
    (void)state;
    apply(f, SAGA_EV_START, now, NULL);
    reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, now += 10);
    reply(f, 1, SAGA_PHASE_INVOKE, SAGA_REPLY_FAILED, 1, now += 10);
    expect_send(f, 0, SAGA_PHASE_COMPENSATE, 1);
    /* compensation_retry.max_attempts is 2. */
    reply(f, 0, SAGA_PHASE_COMPENSATE, SAGA_REPLY_RETRY, 1, now += 10);
    assert_int_equal(f->s->status, SAGA_ST_COMPENSATING);
    apply(f, SAGA_EV_WAKE, now = f->s->wake_at, NULL);
    expect_send(f, 0, SAGA_PHASE_COMPENSATE, 2);
    assert_int_equal(reply(f, 0, SAGA_PHASE_COMPENSATE, SAGA_REPLY_RETRY, 2, now += 10),
                     SAGA_APPLIED);
    assert_int_equal(f->s->status, SAGA_ST_FAILED);
    assert_int_equal(f->s->steps[0].status, SAGA_STEP_COMPENSATION_FAILED);
    assert_int_equal(f->s->wake_at, 0);
    h = history(f, "saga_failed");
    assert_non_null(h);
    assert_int_equal(json_integer_value(json_object_get(h->detail, "attempts")), 2);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(h->detail, "last_error"), "code")),
                        "busy");
    /* Stuck means stuck: timers and replies change nothing. */
    assert_int_equal(apply(f, SAGA_EV_WAKE, now + 100000, NULL), SAGA_IGNORED);
    fx_free(f);
}

static void test_compensation_failed_reply_gets_stuck(void **state)
{
    fixture *f = fx_new(three_steps);
    (void)state;
    apply(f, SAGA_EV_START, T0, NULL);
    reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 10);
    reply(f, 1, SAGA_PHASE_INVOKE, SAGA_REPLY_FAILED, 1, T0 + 20);
    assert_int_equal(reply(f, 0, SAGA_PHASE_COMPENSATE, SAGA_REPLY_FAILED, 1, T0 + 30),
                     SAGA_APPLIED);
    assert_int_equal(f->s->status, SAGA_ST_FAILED);
    assert_true(has_history(f, "compensation_failed"));
    fx_free(f);
}

static const char *const with_pivot =
    "{\"name\":\"p\",\"defaults\":{\"timeout\":\"1s\",\"retry\":{\"max_attempts\":2,"
    "\"backoff\":\"100ms\",\"max_backoff\":\"1s\",\"jitter\":0}},\"deadline\":\"10s\","
    "\"steps\":["
    "{\"name\":\"a\",\"service\":\"s\",\"action\":\"a\",\"compensation\":\"ua\"},"
    "{\"name\":\"b\",\"service\":\"s\",\"action\":\"b\",\"pivot\":true},"
    "{\"name\":\"c\",\"service\":\"s\",\"action\":\"c\"}]}";

static void test_pivot_and_later_steps_retry_without_limit(void **state)
{
    fixture *f = fx_new(with_pivot);
    int64_t now = T0;
    (void)state;
    assert_false(f->def->steps[0].forward_only);
    assert_true(f->def->steps[1].forward_only);
    assert_true(f->def->steps[2].forward_only);
    apply(f, SAGA_EV_START, now, NULL);
    reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, now += 10);
    /* 50 timeouts on the pivot: still retrying, and the deadline (10 s)
     * does not start a compensation past the point of no return. */
    for (int i = 0; i < 50; i++) {
        now = f->s->wake_at;
        assert_int_equal(apply(f, SAGA_EV_WAKE, now, NULL), SAGA_APPLIED);
        assert_int_equal(f->s->status, SAGA_ST_RUNNING);
        assert_false(has_history(f, "deadline_exceeded"));
    }
    assert_true(now > T0 + 10000);
    assert_true(f->s->steps[1].attempts >= 25);
    /* Success moves on; a definite failure after the pivot is stuck. */
    reply(f, 1, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, f->s->steps[1].attempts, now += 10);
    assert_int_equal(reply(f, 2, SAGA_PHASE_INVOKE, SAGA_REPLY_FAILED, 1, now += 10),
                     SAGA_APPLIED);
    assert_int_equal(f->s->status, SAGA_ST_FAILED);
    assert_int_equal(count_sends(f), 0);
    fx_free(f);
}

/* The pivot is the go/no-go point: its definite failure means it took no
 * effect, so the saga has not passed the point of no return and the steps
 * before it are compensated (a declined payment releases the bookings). */
static void test_pivot_definite_failure_compensates_steps_before(void **state)
{
    fixture *f = fx_new(with_pivot);
    int64_t now = T0;
    (void)state;
    apply(f, SAGA_EV_START, now, NULL);
    reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, now += 10);
    expect_send(f, 1, SAGA_PHASE_INVOKE, 1);
    assert_int_equal(reply(f, 1, SAGA_PHASE_INVOKE, SAGA_REPLY_FAILED, 1, now += 10),
                     SAGA_APPLIED);
    assert_int_equal(f->s->status, SAGA_ST_COMPENSATING);
    assert_int_equal(f->s->steps[1].status, SAGA_STEP_FAILED);
    assert_true(has_history(f, "compensation_started"));
    expect_send(f, 0, SAGA_PHASE_COMPENSATE, 1);
    reply(f, 0, SAGA_PHASE_COMPENSATE, SAGA_REPLY_OK, 1, now += 10);
    assert_int_equal(f->s->status, SAGA_ST_COMPENSATED);
    assert_int_equal(f->s->steps[0].status, SAGA_STEP_COMPENSATED);
    assert_int_equal(f->s->steps[2].status, SAGA_STEP_PENDING);
    fx_free(f);
}

/* A step after the pivot whose input does not resolve cannot run, and the
 * steps before the pivot must not be undone: the saga waits for an operator. */
static void test_unresolvable_input_after_pivot_is_stuck(void **state)
{
    fixture *f = fx_new(
        "{\"name\":\"p\",\"steps\":["
        "{\"name\":\"a\",\"service\":\"s\",\"action\":\"a\",\"compensation\":\"ua\"},"
        "{\"name\":\"b\",\"service\":\"s\",\"action\":\"b\",\"pivot\":true},"
        "{\"name\":\"c\",\"service\":\"s\",\"action\":\"c\","
        "\"input\":{\"v\":\"${steps.b.output.missing}\"}}]}");
    int64_t now = T0;
    (void)state;
    apply(f, SAGA_EV_START, now, NULL);
    reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, now += 10);
    assert_int_equal(reply(f, 1, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, now += 10),
                     SAGA_APPLIED);
    assert_int_equal(f->s->status, SAGA_ST_FAILED);
    assert_int_equal(f->s->steps[2].status, SAGA_STEP_FAILED);
    assert_int_equal(f->s->steps[0].status, SAGA_STEP_SUCCEEDED);
    assert_int_equal(count_sends(f), 0);
    assert_true(has_history(f, "saga_failed"));
    assert_false(has_history(f, "compensation_started"));
    fx_free(f);
}

/* The last step has no compensation: if it may have taken effect, undoing
 * the steps before it would leave that effect alone. */
static const char *const irreversible_last =
    "{\"name\":\"i\",\"deadline\":\"5s\",\"defaults\":{\"timeout\":\"1s\",\"retry\":{"
    "\"max_attempts\":2,\"backoff\":\"100ms\",\"max_backoff\":\"1s\",\"jitter\":0}},"
    "\"steps\":["
    "{\"name\":\"a\",\"service\":\"s\",\"action\":\"a\",\"compensation\":\"ua\"},"
    "{\"name\":\"b\",\"service\":\"s\",\"action\":\"approve\"}]}";

static void test_irreversible_step_is_never_given_up(void **state)
{
    fixture *f = fx_new(irreversible_last);
    int64_t now = T0;
    (void)state;
    assert_true(f->def->steps[1].irreversible);
    apply(f, SAGA_EV_START, now, NULL);
    reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, now += 10);
    /* Far more timeouts than max_attempts, past the deadline too. */
    for (int i = 0; i < 30; i++) {
        now = f->s->wake_at;
        assert_int_equal(apply(f, SAGA_EV_WAKE, now, NULL), SAGA_APPLIED);
        assert_int_equal(f->s->status, SAGA_ST_RUNNING);
        assert_false(has_history(f, "step_outcome_unknown"));
        assert_false(has_history(f, "deadline_exceeded"));
    }
    assert_true(now > T0 + 5000);
    assert_int_equal(
        reply(f, 1, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, f->s->steps[1].attempts, now),
        SAGA_APPLIED);
    assert_int_equal(f->s->status, SAGA_ST_COMPLETED);
    fx_free(f);
}

static void test_irreversible_step_definite_failure_compensates(void **state)
{
    fixture *f = fx_new(irreversible_last);
    (void)state;
    apply(f, SAGA_EV_START, T0, NULL);
    reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 10);
    /* A definite failure means no effect: the steps before are undone. */
    assert_int_equal(reply(f, 1, SAGA_PHASE_INVOKE, SAGA_REPLY_FAILED, 1, T0 + 20),
                     SAGA_APPLIED);
    expect_send(f, 0, SAGA_PHASE_COMPENSATE, 1);
    fx_free(f);
}

static void test_deadline_compensates_in_flight_step(void **state)
{
    fixture *f = fx_new(
        "{\"name\":\"d\",\"deadline\":\"2s\",\"defaults\":{\"timeout\":\"10s\"},"
        "\"steps\":["
        "{\"name\":\"a\",\"service\":\"s\",\"action\":\"a\",\"compensation\":\"ua\"},"
        "{\"name\":\"b\",\"service\":\"s\",\"action\":\"b\",\"compensation\":\"ub\"},"
        "{\"name\":\"c\",\"service\":\"s\",\"action\":\"c\"}]}");
    (void)state;
    apply(f, SAGA_EV_START, T0, NULL);
    reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 10);
    /* b is in flight with a 10 s timeout; the 2 s deadline comes first. */
    assert_int_equal(f->s->wake_at, T0 + 2000);
    assert_int_equal(apply(f, SAGA_EV_WAKE, T0 + 2000, NULL), SAGA_APPLIED);
    assert_true(has_history(f, "deadline_exceeded"));
    assert_int_equal(f->s->status, SAGA_ST_COMPENSATING);
    expect_send(f, 1, SAGA_PHASE_COMPENSATE, 1);
    fx_free(f);
}

static void test_unresolvable_input_fails_step(void **state)
{
    fixture *f = fx_new(
        "{\"name\":\"u\",\"steps\":["
        "{\"name\":\"a\",\"service\":\"s\",\"action\":\"a\",\"compensation\":\"ua\"},"
        "{\"name\":\"b\",\"service\":\"s\",\"action\":\"b\",\"compensation\":\"ub\","
        " \"input\":{\"v\":\"${input.missing}\"}},"
        "{\"name\":\"c\",\"service\":\"s\",\"action\":\"c\"}]}");
    const saga_action *h;
    (void)state;
    apply(f, SAGA_EV_START, T0, NULL);
    assert_int_equal(reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 10),
                     SAGA_APPLIED);
    assert_int_equal(f->s->steps[1].status, SAGA_STEP_FAILED);
    h = history(f, "step_failed");
    assert_non_null(h);
    assert_string_equal(json_string_value(json_object_get(h->detail, "code")), "input");
    assert_non_null(strstr(json_string_value(json_object_get(h->detail, "message")),
                           "${input.missing}"));
    expect_send(f, 0, SAGA_PHASE_COMPENSATE, 1);
    fx_free(f);
}

static void test_null_compensation_is_skipped(void **state)
{
    fixture *f = fx_new(
        "{\"name\":\"n\",\"steps\":["
        "{\"name\":\"a\",\"service\":\"s\",\"action\":\"a\",\"compensation\":\"ua\"},"
        "{\"name\":\"b\",\"service\":\"s\",\"action\":\"b\",\"compensation\":null},"
        "{\"name\":\"c\",\"service\":\"s\",\"action\":\"c\"}]}");
    (void)state;
    apply(f, SAGA_EV_START, T0, NULL);
    reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 10);
    reply(f, 1, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 20);
    reply(f, 2, SAGA_PHASE_INVOKE, SAGA_REPLY_FAILED, 1, T0 + 30);
    assert_true(has_history(f, "compensation_not_needed"));
    expect_send(f, 0, SAGA_PHASE_COMPENSATE, 1);
    fx_free(f);
}

static void test_reply_matching(void **state)
{
    fixture *f = fx_new(three_steps);
    char cid[128];
    saga_reply r = {0};
    (void)state;
    apply(f, SAGA_EV_START, T0, NULL);
    /* Wrong command id. */
    memcpy(r.saga_id, ID, sizeof r.saga_id);
    r.command_id = "something-else";
    r.attempt = 1;
    r.status = SAGA_REPLY_OK;
    assert_int_equal(apply(f, SAGA_EV_REPLY, T0 + 1, &r), SAGA_IGNORED);
    assert_non_null(strstr(f->reason, "command_id"));
    /* Another step, the other phase. */
    assert_int_equal(reply(f, 1, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 1),
                     SAGA_IGNORED);
    assert_int_equal(reply(f, 0, SAGA_PHASE_COMPENSATE, SAGA_REPLY_OK, 1, T0 + 1),
                     SAGA_IGNORED);
    /* A step the saga does not have; an attempt never sent. */
    assert_int_equal(reply(f, 9, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 1),
                     SAGA_REJECTED);
    assert_int_equal(reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 2, T0 + 1),
                     SAGA_REJECTED);
    saga_command_id_format(cid, sizeof cid, ID, 0, SAGA_PHASE_INVOKE);
    /* A duplicate of an applied reply is ignored. */
    assert_int_equal(reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 2),
                     SAGA_APPLIED);
    assert_int_equal(reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 3),
                     SAGA_IGNORED);
    assert_int_equal(f->acts.n, 0);
    /* An event of no known kind. */
    assert_int_equal(apply(f, SAGA_EV_KIND_COUNT, T0 + 4, NULL), SAGA_REJECTED);
    fx_free(f);
}

/* ---- operator commands ---- */

static int op(fixture *f, saga_event_kind kind, int64_t now, const char *reason, int step,
              json_t *output)
{
    saga_event ev = {.kind = kind,
                     .now = now,
                     .random = 0.5,
                     .actor = "alice",
                     .reason = reason,
                     .step = step,
                     .output = output};
    saga_actions_clear(&f->acts);
    return saga_machine_apply(f->s, &ev, &f->acts, &f->reason);
}

/* Run three_steps into a stuck compensation of step a. */
static fixture *stuck_saga(int64_t *now)
{
    fixture *f = fx_new(three_steps);
    apply(f, SAGA_EV_START, *now, NULL);
    reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, *now += 10);
    reply(f, 1, SAGA_PHASE_INVOKE, SAGA_REPLY_FAILED, 1, *now += 10);
    reply(f, 0, SAGA_PHASE_COMPENSATE, SAGA_REPLY_RETRY, 1, *now += 10);
    apply(f, SAGA_EV_WAKE, *now = f->s->wake_at, NULL);
    reply(f, 0, SAGA_PHASE_COMPENSATE, SAGA_REPLY_RETRY, 2, *now += 10);
    assert_int_equal(f->s->status, SAGA_ST_FAILED);
    return f;
}

static void test_operator_retry_unsticks_with_fresh_budget(void **state)
{
    int64_t now = T0;
    fixture *f = stuck_saga(&now);
    const saga_action *h;
    (void)state;
    assert_int_equal(op(f, SAGA_EV_OP_RETRY, now += 1000, "payment is back", 0, NULL),
                     SAGA_APPLIED);
    assert_int_equal(f->s->status, SAGA_ST_COMPENSATING);
    /* Attempt numbers go on (3), the budget (2 attempts) starts afresh. */
    expect_send(f, 0, SAGA_PHASE_COMPENSATE, 3);
    h = history(f, "operator_retry");
    assert_non_null(h);
    assert_string_equal(json_string_value(json_object_get(h->detail, "operator")),
                        "alice");
    assert_string_equal(json_string_value(json_object_get(h->detail, "reason")),
                        "payment is back");
    reply(f, 0, SAGA_PHASE_COMPENSATE, SAGA_REPLY_RETRY, 3, now += 10);
    assert_int_equal(f->s->status, SAGA_ST_COMPENSATING); /* 1 of the new 2 used */
    assert_int_equal(reply(f, 0, SAGA_PHASE_COMPENSATE, SAGA_REPLY_OK, 3, now += 10),
                     SAGA_APPLIED);
    assert_int_equal(f->s->status, SAGA_ST_COMPENSATED);
    fx_free(f);
}

static void test_operator_retry_resends_waiting_step_now(void **state)
{
    fixture *f = fx_new(three_steps);
    (void)state;
    apply(f, SAGA_EV_START, T0, NULL);
    reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_RETRY, 1, T0 + 10); /* backing off */
    assert_int_equal(op(f, SAGA_EV_OP_RETRY, T0 + 20, "now", 0, NULL), SAGA_APPLIED);
    expect_send(f, 0, SAGA_PHASE_INVOKE, 2);
    assert_int_equal(f->s->steps[0].attempt_base, 1);
    fx_free(f);
}

static void test_operator_compensate(void **state)
{
    fixture *f = fx_new(three_steps);
    (void)state;
    apply(f, SAGA_EV_START, T0, NULL);
    reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 10);
    /* b is in flight: it may act, so it is compensated first. */
    assert_int_equal(op(f, SAGA_EV_OP_COMPENSATE, T0 + 20, "customer cancelled", 0, NULL),
                     SAGA_APPLIED);
    assert_true(has_history(f, "operator_compensate"));
    assert_int_equal(f->s->steps[1].status, SAGA_STEP_COMPENSATING);
    expect_send(f, 1, SAGA_PHASE_COMPENSATE, 1);
    /* Twice is refused. */
    assert_int_equal(op(f, SAGA_EV_OP_COMPENSATE, T0 + 30, "again", 0, NULL),
                     SAGA_REJECTED);
    fx_free(f);
}

static void test_operator_compensate_refused_past_pivot(void **state)
{
    fixture *f = fx_new(with_pivot);
    (void)state;
    apply(f, SAGA_EV_START, T0, NULL);
    reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 10);
    assert_int_equal(op(f, SAGA_EV_OP_COMPENSATE, T0 + 20, "please", 0, NULL),
                     SAGA_REJECTED);
    assert_non_null(strstr(f->reason, "point of no return"));
    fx_free(f);
}

static void test_operator_skip(void **state)
{
    fixture *f = fx_new(three_steps);
    json_t *out = json_pack("{s:s}", "id", "by-hand");
    int64_t now = T0;
    (void)state;
    apply(f, SAGA_EV_START, now, NULL);
    /* Only the current step. */
    assert_int_equal(op(f, SAGA_EV_OP_SKIP, now += 10, "done by hand", 2, out),
                     SAGA_REJECTED);
    assert_int_equal(op(f, SAGA_EV_OP_SKIP, now += 10, "done by hand", 0, out),
                     SAGA_APPLIED);
    assert_int_equal(f->s->steps[0].status, SAGA_STEP_SKIPPED);
    /* The next step's input sees the output given by hand. */
    expect_send(f, 1, SAGA_PHASE_INVOKE, 1);
    assert_string_equal(
        json_string_value(json_object_get(send_n(f, 0)->payload, "from_a")), "by-hand");
    /* A skipped step is compensated like a succeeded one. */
    reply(f, 1, SAGA_PHASE_INVOKE, SAGA_REPLY_FAILED, 1, now += 10);
    expect_send(f, 0, SAGA_PHASE_COMPENSATE, 1);
    json_decref(out);
    fx_free(f);
}

static void test_operator_skip_stuck_compensation(void **state)
{
    int64_t now = T0;
    fixture *f = stuck_saga(&now);
    (void)state;
    assert_int_equal(op(f, SAGA_EV_OP_SKIP, now += 10, "released by hand", 0, NULL),
                     SAGA_APPLIED);
    assert_true(has_history(f, "compensation_skipped"));
    assert_int_equal(f->s->status, SAGA_ST_COMPENSATED);
    assert_int_equal(op(f, SAGA_EV_OP_SKIP, now += 10, "again", 0, NULL), SAGA_REJECTED);
    fx_free(f);
}

static void test_operator_resolve(void **state)
{
    int64_t now = T0;
    fixture *f = stuck_saga(&now);
    (void)state;
    assert_int_equal(op(f, SAGA_EV_OP_RESOLVE, now += 10, "", 0, NULL), SAGA_REJECTED);
    assert_non_null(strstr(f->reason, "reason"));
    assert_int_equal(op(f, SAGA_EV_OP_RESOLVE, now += 10, "refunded by hand", 0, NULL),
                     SAGA_APPLIED);
    assert_int_equal(f->s->status, SAGA_ST_RESOLVED);
    assert_true(saga_status_is_final(f->s->status));
    assert_int_equal(f->s->wake_at, 0);
    assert_int_equal(op(f, SAGA_EV_OP_RESOLVE, now += 10, "again", 0, NULL),
                     SAGA_REJECTED);
    assert_int_equal(op(f, SAGA_EV_OP_RETRY, now += 10, "again", 0, NULL), SAGA_REJECTED);
    fx_free(f);
}

/* ---- parallel groups ---- */

static const char *const grouped =
    "{\"name\":\"g\",\"deadline\":\"30s\",\"defaults\":{\"timeout\":\"1s\",\"retry\":{"
    "\"max_attempts\":2,\"backoff\":\"100ms\",\"max_backoff\":\"1s\",\"jitter\":0}},"
    "\"steps\":["
    "{\"name\":\"a\",\"service\":\"s\",\"action\":\"a\",\"compensation\":\"ua\"},"
    "{\"name\":\"b1\",\"group\":\"res\",\"service\":\"s1\",\"action\":\"b1\","
    "\"compensation\":\"ub1\","
    " \"input\":{\"from_a\":\"${steps.a.output.id}\"}},"
    "{\"name\":\"b2\",\"group\":\"res\",\"service\":\"s2\",\"action\":\"b2\","
    "\"compensation\":\"ub2\"},"
    "{\"name\":\"c\",\"service\":\"s\",\"action\":\"c\","
    " \"input\":{\"x\":\"${steps.b1.output.id}\",\"y\":\"${steps.b2.output.id}\"}}]}";

/* Start and get a done: both members of the group are out. */
static fixture *group_running(void)
{
    fixture *f = fx_new(grouped);
    apply(f, SAGA_EV_START, T0, NULL);
    assert_int_equal(reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 10),
                     SAGA_APPLIED);
    return f;
}

static void test_group_runs_in_parallel(void **state)
{
    fixture *f = group_running();
    (void)state;
    assert_int_equal(f->def->steps[1].stage_first, 1);
    assert_int_equal(f->def->steps[2].stage_last, 2);
    assert_int_equal(count_sends(f), 2);
    assert_int_equal(send_n(f, 0)->step, 1);
    assert_int_equal(send_n(f, 1)->step, 2);
    /* One done: wait for the other; both done: move on. */
    assert_int_equal(reply(f, 2, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 20),
                     SAGA_APPLIED);
    assert_int_equal(count_sends(f), 0);
    assert_int_equal(f->s->status, SAGA_ST_RUNNING);
    assert_int_equal(reply(f, 1, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 30),
                     SAGA_APPLIED);
    expect_send(f, 3, SAGA_PHASE_INVOKE, 1);
    assert_string_equal(json_string_value(json_object_get(send_n(f, 0)->payload, "y")),
                        "out-1");
    reply(f, 3, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 40);
    assert_int_equal(f->s->status, SAGA_ST_COMPLETED);
    fx_free(f);
}

static void test_group_member_fails_while_other_in_flight(void **state)
{
    fixture *f = group_running();
    (void)state;
    /* b1 fails while b2 is still out: b2 may have acted, so it is undone,
     * then a; b1 (a definite failure) is not. */
    assert_int_equal(reply(f, 1, SAGA_PHASE_INVOKE, SAGA_REPLY_FAILED, 1, T0 + 20),
                     SAGA_APPLIED);
    assert_int_equal(f->s->steps[2].status, SAGA_STEP_COMPENSATING);
    expect_send(f, 2, SAGA_PHASE_COMPENSATE, 1);
    /* b2's late answer changes nothing. */
    assert_int_equal(reply(f, 2, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 25),
                     SAGA_IGNORED);
    reply(f, 2, SAGA_PHASE_COMPENSATE, SAGA_REPLY_OK, 1, T0 + 30);
    expect_send(f, 0, SAGA_PHASE_COMPENSATE, 1);
    reply(f, 0, SAGA_PHASE_COMPENSATE, SAGA_REPLY_OK, 1, T0 + 40);
    assert_int_equal(f->s->status, SAGA_ST_COMPENSATED);
    assert_int_equal(f->s->steps[1].status, SAGA_STEP_FAILED);
    fx_free(f);
}

static void test_group_compensates_succeeded_members_in_reverse(void **state)
{
    fixture *f = group_running();
    (void)state;
    reply(f, 1, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 20);
    reply(f, 2, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 30);
    /* c fails: b2, then b1, then a. */
    reply(f, 3, SAGA_PHASE_INVOKE, SAGA_REPLY_FAILED, 1, T0 + 40);
    expect_send(f, 2, SAGA_PHASE_COMPENSATE, 1);
    reply(f, 2, SAGA_PHASE_COMPENSATE, SAGA_REPLY_OK, 1, T0 + 50);
    expect_send(f, 1, SAGA_PHASE_COMPENSATE, 1);
    reply(f, 1, SAGA_PHASE_COMPENSATE, SAGA_REPLY_OK, 1, T0 + 60);
    expect_send(f, 0, SAGA_PHASE_COMPENSATE, 1);
    fx_free(f);
}

static void test_group_timers_are_per_member(void **state)
{
    fixture *f = group_running();
    int64_t now;
    (void)state;
    /* b2 answers; b1 times out, alone, and is retried alone. */
    reply(f, 2, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 20);
    now = f->s->wake_at;
    assert_int_equal(now, T0 + 10 + 1000);
    assert_int_equal(apply(f, SAGA_EV_WAKE, now, NULL), SAGA_APPLIED);
    assert_true(has_history(f, "attempt_timed_out"));
    assert_int_equal(apply(f, SAGA_EV_WAKE, f->s->wake_at, NULL), SAGA_APPLIED);
    expect_send(f, 1, SAGA_PHASE_INVOKE, 2);
    /* Its retries run out: unknown, and everything is undone (b1, b2, a). */
    apply(f, SAGA_EV_WAKE, f->s->wake_at, NULL);
    assert_true(has_history(f, "step_outcome_unknown"));
    expect_send(f, 2, SAGA_PHASE_COMPENSATE, 1);
    fx_free(f);
}

static void test_group_deadline_and_skip(void **state)
{
    fixture *f = group_running();
    json_t *out = json_pack("{s:s}", "id", "manual");
    (void)state;
    /* Skip one member by hand: the stage waits for the other. */
    assert_int_equal(op(f, SAGA_EV_OP_SKIP, T0 + 20, "by hand", 2, out), SAGA_APPLIED);
    assert_int_equal(f->s->steps[2].status, SAGA_STEP_SKIPPED);
    assert_int_equal(count_sends(f), 0);
    /* The deadline: b1 (in flight) is undone, then b2 (skipped: done), then a. */
    assert_int_equal(apply(f, SAGA_EV_WAKE, T0 + 30000, NULL), SAGA_APPLIED);
    assert_true(has_history(f, "deadline_exceeded"));
    expect_send(f, 2, SAGA_PHASE_COMPENSATE, 1);
    reply(f, 2, SAGA_PHASE_COMPENSATE, SAGA_REPLY_OK, 1, T0 + 30010);
    expect_send(f, 1, SAGA_PHASE_COMPENSATE, 1);
    json_decref(out);
    fx_free(f);
}

/* ---- holds: a command the engine may not send yet (breaker, bulkhead) ---- */

static int send_index(const fixture *f, int n)
{
    for (int i = 0; i < f->acts.n; i++)
        if (f->acts.items[i].kind == SAGA_ACT_SEND && n-- == 0)
            return i;
    return -1;
}

static void test_hold_never_uses_an_attempt_nor_times_out(void **state)
{
    fixture *f = fx_new(three_steps);
    const saga_action *h;
    (void)state;
    apply(f, SAGA_EV_START, T0, NULL);
    /* Sent and awaiting its answer: a timer the store may keep early. */
    assert_int_equal(saga_machine_next_wake(f->s), f->s->wake_at);
    assert_true(f->s->wake_at > T0);
    assert_false(saga_machine_wake_is_exact(f->s));
    assert_int_equal(saga_machine_hold(f->s, &f->acts, send_index(f, 0), T0 + 30000,
                                       SAGA_HIST_STEP_HELD,
                                       json_pack("{s:s}", "reason", "open")),
                     SAGA_OK);
    /* Held: the gate may wake it early by this exact time. */
    assert_int_equal(saga_machine_next_wake(f->s), T0 + 30000);
    assert_true(saga_machine_wake_is_exact(f->s));
    assert_int_equal(count_sends(f), 0);
    assert_false(has_history(f, "step_dispatched"));
    h = history(f, "step_held");
    assert_non_null(h);
    assert_string_equal(json_string_value(json_object_get(h->detail, "reason")), "open");
    assert_string_equal(json_string_value(json_object_get(h->detail, "service")), "s1");
    assert_int_equal(json_integer_value(json_object_get(h->detail, "until")), T0 + 30000);
    assert_int_equal(f->s->steps[0].attempts, 0);
    assert_int_equal(f->s->steps[0].awaiting, 0);
    assert_int_equal(f->s->steps[0].started_at, 0);
    assert_int_equal(f->s->wake_at, T0 + 30000);
    /* Held far longer than the step's 1 s timeout: still no attempt used. */
    assert_int_equal(apply(f, SAGA_EV_WAKE, T0 + 5000, NULL), SAGA_IGNORED);
    for (int i = 1; i <= 5; i++) {
        int64_t at = T0 + 30000 * i;
        assert_int_equal(apply(f, SAGA_EV_WAKE, at, NULL), SAGA_APPLIED);
        expect_send(f, 0, SAGA_PHASE_INVOKE, 1);
        assert_int_equal(saga_machine_hold(f->s, &f->acts, send_index(f, 0), at + 30000,
                                           SAGA_HIST_NONE, NULL),
                         SAGA_OK);
        assert_int_equal(f->acts.n, 0); /* quiet hold: nothing recorded */
    }
    assert_int_equal(f->s->status, SAGA_ST_RUNNING);
    /* Let through at last: attempt 1, with the full timeout from now. */
    assert_int_equal(apply(f, SAGA_EV_WAKE, T0 + 180000, NULL), SAGA_APPLIED);
    expect_send(f, 0, SAGA_PHASE_INVOKE, 1);
    assert_int_equal(send_n(f, 0)->deadline, T0 + 181000);
    assert_int_equal(f->s->steps[0].started_at, T0 + 180000);
    assert_int_equal(reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 180010),
                     SAGA_APPLIED);
    expect_send(f, 1, SAGA_PHASE_INVOKE, 1);
    fx_free(f);
}

/* progressed_at moves only when a status changes: a retry reply, a wake
 * that re-sends, a timeout with attempts left and a hold move updated_at
 * alone, so a saga that retries or waits for ever shows its age. */
static void test_progressed_at_moves_only_on_progress(void **state)
{
    fixture *f = fx_new(three_steps);
    (void)state;
    assert_int_equal(apply(f, SAGA_EV_START, T0, NULL), SAGA_APPLIED);
    assert_int_equal(f->s->progressed_at, T0);
    /* A retry reply, then the wake that re-sends the same step. */
    assert_int_equal(reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_RETRY, 1, T0 + 10),
                     SAGA_APPLIED);
    assert_int_equal(f->s->updated_at, T0 + 10);
    assert_int_equal(f->s->progressed_at, T0);
    assert_int_equal(apply(f, SAGA_EV_WAKE, f->s->wake_at, NULL), SAGA_APPLIED);
    expect_send(f, 0, SAGA_PHASE_INVOKE, 2);
    assert_int_equal(f->s->progressed_at, T0);
    /* Attempt 2 times out (one attempt left): rescheduled, not progress. */
    assert_int_equal(apply(f, SAGA_EV_WAKE, f->s->wake_at, NULL), SAGA_APPLIED);
    assert_true(has_history(f, "attempt_timed_out"));
    assert_int_equal(f->s->status, SAGA_ST_RUNNING);
    assert_int_equal(f->s->progressed_at, T0);
    /* The wake for attempt 3 is held (a breaker), and held again. */
    {
        int64_t at = f->s->wake_at;
        assert_int_equal(apply(f, SAGA_EV_WAKE, at, NULL), SAGA_APPLIED);
        assert_int_equal(saga_machine_hold(f->s, &f->acts, send_index(f, 0), at + 30000,
                                           SAGA_HIST_STEP_HELD, NULL),
                         SAGA_OK);
        assert_int_equal(apply(f, SAGA_EV_WAKE, at + 30000, NULL), SAGA_APPLIED);
        assert_int_equal(saga_machine_hold(f->s, &f->acts, send_index(f, 0), at + 60000,
                                           SAGA_HIST_NONE, NULL),
                         SAGA_OK);
        assert_int_equal(f->s->updated_at, at + 30000);
        assert_int_equal(f->s->progressed_at, T0);
        /* Let through: still the same step's attempt 3, still no progress. */
        assert_int_equal(apply(f, SAGA_EV_WAKE, at + 60000, NULL), SAGA_APPLIED);
        expect_send(f, 0, SAGA_PHASE_INVOKE, 3);
        assert_int_equal(f->s->progressed_at, T0);
        /* A duplicate reply is not applied at all. */
        assert_int_equal(reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_RETRY, 2, at + 60005),
                         SAGA_IGNORED);
        assert_int_equal(f->s->progressed_at, T0);
        /* The step succeeds: progress. */
        assert_int_equal(reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 3, at + 60010),
                         SAGA_APPLIED);
        assert_int_equal(f->s->progressed_at, at + 60010);
        assert_int_equal(f->s->updated_at, at + 60010);
    }
    /* A failure that starts compensating is progress too. */
    assert_int_equal(reply(f, 1, SAGA_PHASE_INVOKE, SAGA_REPLY_FAILED, 1, T0 + 900000),
                     SAGA_APPLIED);
    assert_int_equal(f->s->status, SAGA_ST_COMPENSATING);
    assert_int_equal(f->s->progressed_at, T0 + 900000);
    fx_free(f);
}

static void test_hold_of_a_retry_and_of_a_compensation(void **state)
{
    fixture *f = fx_new(three_steps);
    (void)state;
    apply(f, SAGA_EV_START, T0, NULL);
    reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_RETRY, 1, T0 + 10);
    assert_int_equal(apply(f, SAGA_EV_WAKE, T0 + 110, NULL), SAGA_APPLIED);
    expect_send(f, 0, SAGA_PHASE_INVOKE, 2);
    assert_int_equal(saga_machine_hold(f->s, &f->acts, send_index(f, 0), T0 + 5000,
                                       SAGA_HIST_NONE, NULL),
                     SAGA_OK);
    assert_int_equal(f->s->steps[0].attempts, 1);
    assert_int_equal(f->s->steps[0].started_at, T0); /* the first attempt's */
    /* A late ok of attempt 1 while attempt 2 is held is the answer. */
    assert_int_equal(reply(f, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 200),
                     SAGA_APPLIED);
    expect_send(f, 1, SAGA_PHASE_INVOKE, 1);
    assert_int_equal(reply(f, 1, SAGA_PHASE_INVOKE, SAGA_REPLY_FAILED, 1, T0 + 300),
                     SAGA_APPLIED);
    expect_send(f, 0, SAGA_PHASE_COMPENSATE, 1);
    assert_int_equal(saga_machine_hold(f->s, &f->acts, send_index(f, 0), T0 + 9000,
                                       SAGA_HIST_COMPENSATION_HELD, NULL),
                     SAGA_OK);
    assert_true(has_history(f, "compensation_held"));
    assert_false(has_history(f, "compensation_dispatched"));
    assert_int_equal(f->s->status, SAGA_ST_COMPENSATING);
    assert_int_equal(f->s->steps[0].attempts, 0);
    assert_int_equal(apply(f, SAGA_EV_WAKE, T0 + 9000, NULL), SAGA_APPLIED);
    expect_send(f, 0, SAGA_PHASE_COMPENSATE, 1);
    reply(f, 0, SAGA_PHASE_COMPENSATE, SAGA_REPLY_OK, 1, T0 + 9010);
    assert_int_equal(f->s->status, SAGA_ST_COMPENSATED);
    fx_free(f);
}

static void test_hold_one_member_of_a_group(void **state)
{
    fixture *f = group_running();
    (void)state;
    assert_int_equal(count_sends(f), 2);
    assert_int_equal(saga_machine_hold(f->s, &f->acts, send_index(f, 1), T0 + 500,
                                       SAGA_HIST_NONE, NULL),
                     SAGA_OK);
    assert_int_equal(count_sends(f), 1);
    assert_int_equal(send_n(f, 0)->step, 1);
    assert_int_equal(f->s->steps[2].attempts, 0);
    assert_int_equal(f->s->steps[1].attempts, 1);
    assert_int_equal(f->s->wake_at, T0 + 500);
    assert_int_equal(reply(f, 1, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 20),
                     SAGA_APPLIED);
    assert_int_equal(f->s->status, SAGA_ST_RUNNING);
    assert_int_equal(apply(f, SAGA_EV_WAKE, T0 + 500, NULL), SAGA_APPLIED);
    expect_send(f, 2, SAGA_PHASE_INVOKE, 1);
    /* Misuse: not a SEND, out of range, already held. */
    assert_int_equal(saga_machine_hold(f->s, &f->acts, -1, 0, SAGA_HIST_NONE, NULL),
                     SAGA_EINVAL);
    assert_int_equal(
        saga_machine_hold(f->s, &f->acts, f->acts.n, 0, SAGA_HIST_NONE, NULL),
        SAGA_EINVAL);
    {
        int i = send_index(f, 0);
        int other = i == 0 ? 1 : 0;
        assert_int_equal(
            saga_machine_hold(f->s, &f->acts, other, 0, SAGA_HIST_NONE, NULL),
            SAGA_EINVAL);
        assert_int_equal(
            saga_machine_hold(f->s, &f->acts, i, T0 + 900, SAGA_HIST_NONE, NULL),
            SAGA_OK);
    }
    assert_int_equal(saga_machine_hold(NULL, &f->acts, 0, 0, SAGA_HIST_NONE, NULL),
                     SAGA_EINVAL);
    fx_free(f);
}

/* ---- the exhaustive table ---- */

typedef struct snapshot {
    saga_status status;
    int cursor;
    int64_t wake_at, updated_at;
    saga_step_status st[3];
    int attempts[3], awaiting[3];
    int64_t due[3];
} snapshot;

static void take(const saga_state *s, snapshot *sn)
{
    memset(sn, 0, sizeof *sn);
    sn->status = s->status;
    sn->cursor = s->cursor;
    sn->wake_at = s->wake_at;
    sn->updated_at = s->updated_at;
    for (int i = 0; i < 3; i++) {
        sn->st[i] = s->steps[i].status;
        sn->attempts[i] = s->steps[i].attempts;
        sn->awaiting[i] = s->steps[i].awaiting;
        sn->due[i] = s->steps[i].due_at;
    }
}

enum {
    EV_START,
    EV_OK_I,
    EV_FAILED_I,
    EV_RETRY_I,
    EV_OK_C,
    EV_FAILED_C,
    EV_RETRY_C,
    EV_WAKE_DUE,
    EV_WAKE_EARLY,
    EV_OP_RETRY,
    EV_OP_COMPENSATE,
    EV_OP_SKIP,
    EV_OP_RESOLVE,
    EV_SIGNAL,
    EV_COUNT
};
static const char *const ev_names[] = {"start",
                                       "ok/invoke",
                                       "failed/invoke",
                                       "retry/invoke",
                                       "ok/compensate",
                                       "failed/compensate",
                                       "retry/compensate",
                                       "wake(due)",
                                       "wake(early)",
                                       "op:retry",
                                       "op:compensate",
                                       "op:skip",
                                       "op:resolve",
                                       "signal"};

static void test_every_status_step_status_and_event(void **state)
{
    int applied = 0, ignored = 0, rejected = 0;
    (void)state;
    for (int ss = 0; ss < SAGA_STATUS_COUNT; ss++)
        for (int ps = 0; ps < SAGA_STEP_STATUS_COUNT; ps++)
            for (int e = 0; e < EV_COUNT; e++) {
                fixture *f = fx_new(three_steps);
                snapshot before, after;
                int64_t at = T0 + 10; /* the event's time */
                int rc;
                /* Saga at step b (index 1) with a succeeded before it. */
                f->s->status = (saga_status)ss;
                f->s->cursor = 1;
                f->s->steps[0].status = SAGA_STEP_SUCCEEDED;
                f->s->steps[0].output = json_pack("{s:s}", "id", "x");
                f->s->steps[1].status = (saga_step_status)ps;
                f->s->steps[1].attempts = 1;
                f->s->steps[1].awaiting = 1;
                f->s->steps[1].due_at = T0 + 1000;
                f->s->wake_at = T0 + 1000;
                take(f->s, &before);
                switch (e) {
                case EV_START:
                    rc = apply(f, SAGA_EV_START, T0 + 10, NULL);
                    break;
                case EV_OK_I:
                case EV_FAILED_I:
                case EV_RETRY_I:
                    rc = reply(f, 1, SAGA_PHASE_INVOKE, (saga_reply_status)(e - EV_OK_I),
                               1, T0 + 10);
                    break;
                case EV_OK_C:
                case EV_FAILED_C:
                case EV_RETRY_C:
                    rc = reply(f, 1, SAGA_PHASE_COMPENSATE,
                               (saga_reply_status)(e - EV_OK_C), 1, T0 + 10);
                    break;
                case EV_WAKE_DUE:
                    at = T0 + 1000;
                    rc = apply(f, SAGA_EV_WAKE, at, NULL);
                    break;
                case EV_WAKE_EARLY:
                    rc = apply(f, SAGA_EV_WAKE, T0 + 10, NULL);
                    break;
                case EV_SIGNAL: {
                    /* This saga has no wait step: a signal changes nothing. */
                    saga_event ev = {.kind = SAGA_EV_SIGNAL,
                                     .now = T0 + 10,
                                     .random = 0.5,
                                     .signal = "approval",
                                     .signal_id = "s1"};
                    saga_actions_clear(&f->acts);
                    rc = saga_machine_apply(f->s, &ev, &f->acts, &f->reason);
                    break;
                }
                default:
                    rc = op(f, (saga_event_kind)(SAGA_EV_OP_RETRY + (e - EV_OP_RETRY)),
                            T0 + 10, "table", 1, NULL);
                    break;
                }
                take(f->s, &after);
                if (rc != SAGA_APPLIED && rc != SAGA_IGNORED && rc != SAGA_REJECTED)
                    fail_msg("%s/%s/%s: result %d", saga_status_name(ss),
                             saga_step_status_name(ps), ev_names[e], rc);
                if (rc != SAGA_APPLIED) {
                    if (f->reason == NULL ||
                        memcmp(&before, &after, sizeof before) != 0 || f->acts.n != 0)
                        fail_msg(
                            "%s/%s/%s: not applied but changed state or gave no reason",
                            saga_status_name(ss), saga_step_status_name(ps), ev_names[e]);
                    rc == SAGA_IGNORED ? ignored++ : rejected++;
                } else {
                    int final = saga_status_is_final(after.status) ||
                                after.status == SAGA_ST_FAILED;
                    int awaiting =
                        after.awaiting[0] || after.awaiting[1] || after.awaiting[2];
                    applied++;
                    /* A saga that ended has no timer and nothing in flight;
                     * one that goes on always has a timer. */
                    if (final && (after.wake_at != 0 ||
                                  (awaiting && after.status != SAGA_ST_FAILED)))
                        fail_msg("%s/%s/%s: ended with a timer or a command out",
                                 saga_status_name(ss), saga_step_status_name(ps),
                                 ev_names[e]);
                    if (!final && after.wake_at == 0)
                        fail_msg("%s/%s/%s: still %s but no timer", saga_status_name(ss),
                                 saga_step_status_name(ps), ev_names[e],
                                 saga_status_name(after.status));
                    if (after.updated_at != at)
                        fail_msg("%s/%s/%s: updated_at not the event's time",
                                 saga_status_name(ss), saga_step_status_name(ps),
                                 ev_names[e]);
                }
                /* Events that only make sense in one place. */
                if (e == EV_START && ss != SAGA_ST_NEW)
                    assert_int_equal(rc, SAGA_REJECTED);
                /* Ended sagas ignore events and refuse operator commands;
                 * a failed one can be retried, skipped or resolved. */
                if ((ss == SAGA_ST_COMPLETED || ss == SAGA_ST_COMPENSATED ||
                     ss == SAGA_ST_FAILED || ss == SAGA_ST_RESOLVED) &&
                    e != EV_START && (e < EV_OP_RETRY || e == EV_SIGNAL))
                    assert_int_equal(rc, SAGA_IGNORED);
                if (saga_status_is_final((saga_status)ss) && e >= EV_OP_RETRY &&
                    e <= EV_OP_RESOLVE)
                    assert_int_equal(rc, SAGA_REJECTED);
                if (ss == SAGA_ST_FAILED && e == EV_OP_RESOLVE)
                    assert_int_equal(rc, SAGA_APPLIED);
                if (ss != SAGA_ST_FAILED && e == EV_OP_RESOLVE)
                    assert_int_equal(rc, SAGA_REJECTED);
                if (ss == SAGA_ST_RUNNING && ps == SAGA_STEP_DISPATCHED &&
                    (e == EV_OK_I || e == EV_FAILED_I || e == EV_RETRY_I ||
                     e == EV_WAKE_DUE))
                    assert_int_equal(rc, SAGA_APPLIED);
                if (ss == SAGA_ST_COMPENSATING && ps == SAGA_STEP_COMPENSATING &&
                    (e == EV_OK_C || e == EV_FAILED_C || e == EV_RETRY_C ||
                     e == EV_WAKE_DUE))
                    assert_int_equal(rc, SAGA_APPLIED);
                if (ss == SAGA_ST_RUNNING &&
                    (e == EV_OK_C || e == EV_FAILED_C || e == EV_RETRY_C))
                    assert_int_not_equal(rc, SAGA_APPLIED);
                if (e == EV_WAKE_EARLY)
                    assert_int_not_equal(rc, SAGA_APPLIED);
                fx_free(f);
            }
    print_message("table: %d combinations: %d applied, %d ignored, %d rejected\n",
                  applied + ignored + rejected, applied, ignored, rejected);
    /* The classification as reviewed: a change in which events a state
     * applies, ignores or refuses moves these figures, and must be looked
     * at (and the figures updated) on purpose. */
    assert_int_equal(applied, 36);
    assert_int_equal(ignored, 469);
    assert_int_equal(rejected, 475);
}

/* The history's kinds: one name table, the stored names exactly these
 * (saga.saga_event.kind, read by sagactl and operators' queries: a rename
 * would break them), each once, each parsed back. */
static void test_history_kind_names(void **state)
{
    static const char *const expected[] = {"saga_started",
                                           "step_dispatched",
                                           "compensation_dispatched",
                                           "step_held",
                                           "compensation_held",
                                           "step_succeeded",
                                           "step_failed",
                                           "attempt_failed",
                                           "attempt_timed_out",
                                           "retry_scheduled",
                                           "step_outcome_unknown",
                                           "deadline_exceeded",
                                           "compensation_started",
                                           "compensation_not_needed",
                                           "step_compensated",
                                           "compensation_failed",
                                           "saga_completed",
                                           "saga_compensated",
                                           "saga_failed",
                                           "operator_retry",
                                           "operator_compensate",
                                           "step_skipped",
                                           "compensation_skipped",
                                           "saga_resolved",
                                           "saga_set_aside",
                                           "definition_unavailable",
                                           "step_not_run",
                                           "step_waiting",
                                           "signal_received",
                                           "signal_timed_out",
                                           "fanout_started",
                                           "child_started",
                                           "child_ended",
                                           "child_compensation_asked",
                                           "parent_compensation"};
    (void)state;
    assert_int_equal(sizeof expected / sizeof expected[0], SAGA_HIST__COUNT);
    for (int i = 0; i < SAGA_HIST__COUNT; i++) {
        saga_history_kind k;
        const char *name = saga_history_kind_name((saga_history_kind)i);
        assert_non_null(name);
        assert_string_equal(name, expected[i]);
        assert_int_equal(saga_history_kind_parse(name, &k), 0);
        assert_int_equal(k, i);
    }
    assert_null(saga_history_kind_name(SAGA_HIST_NONE));
    assert_null(saga_history_kind_name(SAGA_HIST__COUNT));
    {
        saga_history_kind k = SAGA_HIST_SAGA_STARTED;
        assert_int_equal(saga_history_kind_parse("saga_exploded", &k), -1);
        assert_int_equal(saga_history_kind_parse(NULL, &k), -1);
        assert_int_equal(k, SAGA_HIST_SAGA_STARTED);
    }
}

static void test_status_names_round_trip(void **state)
{
    (void)state;
    for (int i = 0; i < SAGA_STATUS_COUNT; i++) {
        saga_status s;
        assert_int_equal(saga_status_parse(saga_status_name((saga_status)i), &s), 0);
        assert_int_equal(s, i);
    }
    for (int i = 0; i < SAGA_STEP_STATUS_COUNT; i++) {
        saga_step_status s;
        assert_int_equal(
            saga_step_status_parse(saga_step_status_name((saga_step_status)i), &s), 0);
        assert_int_equal(s, i);
    }
    assert_int_not_equal(saga_status_parse("bogus", &(saga_status){0}), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_dispatches_first_step),
        cmocka_unit_test(test_happy_path_completes),
        cmocka_unit_test(test_failure_at_second_step_compensates_first),
        cmocka_unit_test(test_failure_at_third_step_compensates_in_reverse),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_retry_reply_backs_off_then_resends_same_command),
        cmocka_unit_test(test_error_belongs_to_the_current_phase),
        cmocka_unit_test(test_retry_after_hint_is_respected),
        cmocka_unit_test(test_timeouts_exhausted_make_outcome_unknown_and_compensate_it),
        cmocka_unit_test(test_compensation_exhausted_gets_stuck),
        cmocka_unit_test(test_compensation_failed_reply_gets_stuck),
        cmocka_unit_test(test_pivot_and_later_steps_retry_without_limit),
        cmocka_unit_test(test_pivot_definite_failure_compensates_steps_before),
        cmocka_unit_test(test_unresolvable_input_after_pivot_is_stuck),
        cmocka_unit_test(test_irreversible_step_is_never_given_up),
        cmocka_unit_test(test_irreversible_step_definite_failure_compensates),
        cmocka_unit_test(test_deadline_compensates_in_flight_step),
        cmocka_unit_test(test_unresolvable_input_fails_step),
        cmocka_unit_test(test_null_compensation_is_skipped),
        cmocka_unit_test(test_reply_matching),
        cmocka_unit_test(test_operator_retry_unsticks_with_fresh_budget),
        cmocka_unit_test(test_operator_retry_resends_waiting_step_now),
        cmocka_unit_test(test_operator_compensate),
        cmocka_unit_test(test_operator_compensate_refused_past_pivot),
        cmocka_unit_test(test_operator_skip),
        cmocka_unit_test(test_operator_skip_stuck_compensation),
        cmocka_unit_test(test_operator_resolve),
        cmocka_unit_test(test_group_runs_in_parallel),
        cmocka_unit_test(test_hold_never_uses_an_attempt_nor_times_out),
        cmocka_unit_test(test_hold_of_a_retry_and_of_a_compensation),
        cmocka_unit_test(test_progressed_at_moves_only_on_progress),
        cmocka_unit_test(test_hold_one_member_of_a_group),
        cmocka_unit_test(test_group_member_fails_while_other_in_flight),
        cmocka_unit_test(test_group_compensates_succeeded_members_in_reverse),
        cmocka_unit_test(test_group_timers_are_per_member),
        cmocka_unit_test(test_group_deadline_and_skip),
        cmocka_unit_test(test_every_status_step_status_and_event),
        cmocka_unit_test(test_status_names_round_trip),
        cmocka_unit_test(test_history_kind_names),
    };
    return cmocka_run_group_tests_name("saga machine", tests, NULL, NULL);
}
