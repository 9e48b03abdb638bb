/* Wait steps (a step that waits for a signal): nothing is sent, a signal
 * ends the wait with its payload as the output or fails the step with its
 * verdict, a timeout takes the default or fails, a signal for another
 * name or at another moment changes nothing, a forged reply cannot end
 * the wait; and the definition's rules for a wait step. Pure. */
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

#define T0  1700000000000LL
#define ID  "6f1c2f7e-8a1b-4c3d-9e2f-0123456789ab"
#define H48 (48LL * 3600 * 1000)

static const char *const approval =
    "{\"name\":\"expense\",\"defaults\":{\"timeout\":\"1s\"},\"steps\":["
    "{\"name\":\"reserve\",\"service\":\"budget\",\"action\":\"reserve\","
    " \"compensation\":\"release\"},"
    "{\"name\":\"approve\",\"wait\":{\"signal\":\"approval\",\"timeout\":\"48h\"}},"
    "{\"name\":\"pay\",\"service\":\"bank\",\"action\":\"pay\","
    " \"input\":{\"approved_by\":\"${steps.approve.output.by}\"}}]}";

static const char *const with_default =
    "{\"name\":\"expense\",\"steps\":["
    "{\"name\":\"reserve\",\"service\":\"budget\",\"action\":\"reserve\","
    " \"compensation\":\"release\"},"
    "{\"name\":\"approve\",\"wait\":{\"signal\":\"approval\",\"timeout\":\"2h\","
    " \"default\":{\"by\":\"nobody\",\"auto\":true}}},"
    "{\"name\":\"pay\",\"service\":\"bank\",\"action\":\"pay\","
    " \"input\":{\"approved_by\":\"${steps.approve.output.by}\"}}]}";

static const char *const forever =
    "{\"name\":\"expense\",\"steps\":["
    "{\"name\":\"approve\",\"wait\":{\"signal\":\"approval\"}},"
    "{\"name\":\"pay\",\"service\":\"bank\",\"action\":\"pay\"}]}";

typedef struct run {
    saga_definition *def;
    saga_state *s;
    saga_actions acts;
    const char *reason;
} run;

static run *start(const char *json)
{
    run *r = calloc(1, sizeof *r);
    saga_def_problems probs = {0};
    json_t *input = json_object();
    saga_event ev = {.kind = SAGA_EV_START, .now = T0, .random = 0.5};
    if (saga_definition_parse(json, strlen(json), &r->def, &probs) != SAGA_OK)
        fail_msg("%s: %s", probs.items[0].where, probs.items[0].message);
    r->def->version = 1;
    r->s = saga_state_new(r->def, ID, input);
    json_decref(input);
    assert_int_equal(saga_machine_apply(r->s, &ev, &r->acts, NULL), SAGA_APPLIED);
    return r;
}

static void finish(run *r)
{
    saga_actions_clear(&r->acts);
    saga_state_free(r->s);
    saga_definition_free(r->def);
    free(r);
}

static int reply(run *r, int i, saga_phase phase, int ok, int64_t now)
{
    char cid[128];
    saga_reply rep = {0};
    saga_event ev = {.kind = SAGA_EV_REPLY, .now = now, .random = 0.5, .reply = &rep};
    int rc;
    saga_command_id_format(cid, sizeof cid, ID, i, phase);
    memcpy(rep.saga_id, ID, sizeof rep.saga_id);
    rep.step = i;
    rep.phase = phase;
    rep.command_id = cid;
    rep.attempt = r->s->steps[i].attempts;
    rep.status = ok ? SAGA_REPLY_OK : SAGA_REPLY_FAILED;
    rep.output = ok ? json_object() : NULL;
    rep.error_code = ok ? NULL : "no";
    rep.error_message = ok ? NULL : "refused";
    saga_actions_clear(&r->acts);
    rc = saga_machine_apply(r->s, &ev, &r->acts, &r->reason);
    json_decref(rep.output);
    return rc;
}

static int signal(run *r, const char *name, json_t *payload, int failed, int64_t now)
{
    saga_event ev = {.kind = SAGA_EV_SIGNAL,
                     .now = now,
                     .random = 0.5,
                     .signal = name,
                     .signal_id = "sig-1",
                     .output = payload,
                     .signal_failed = failed,
                     .reason = failed ? "the manager said no" : NULL};
    int rc;
    saga_actions_clear(&r->acts);
    rc = saga_machine_apply(r->s, &ev, &r->acts, &r->reason);
    json_decref(payload);
    return rc;
}

static int wake(run *r, int64_t now)
{
    saga_event ev = {.kind = SAGA_EV_WAKE, .now = now, .random = 0.5};
    saga_actions_clear(&r->acts);
    return saga_machine_apply(r->s, &ev, &r->acts, &r->reason);
}

static const saga_action *first_send(const run *r)
{
    for (int i = 0; i < r->acts.n; i++)
        if (r->acts.items[i].kind == SAGA_ACT_SEND)
            return &r->acts.items[i];
    return NULL;
}

static int has(const run *r, saga_history_kind k)
{
    for (int i = 0; i < r->acts.n; i++)
        if (r->acts.items[i].kind == SAGA_ACT_HISTORY && r->acts.items[i].what == k)
            return 1;
    return 0;
}

static void test_signal_ends_the_wait(void **state)
{
    run *r = start(approval);
    const saga_action *a;
    (void)state;
    /* The signal comes too early: ignored (sagad keeps it for later). */
    assert_int_equal(signal(r, "approval", json_object(), 0, T0 + 5), SAGA_IGNORED);
    assert_int_equal(reply(r, 0, SAGA_PHASE_INVOKE, 1, T0 + 10), SAGA_APPLIED);
    assert_null(first_send(r)); /* a wait sends nothing */
    assert_true(has(r, SAGA_HIST_STEP_WAITING));
    assert_int_equal(r->s->steps[1].status, SAGA_STEP_DISPATCHED);
    assert_int_equal(r->s->wake_at, T0 + 10 + H48);
    /* Another signal, and a forged reply, change nothing. */
    assert_int_equal(signal(r, "payment", json_object(), 0, T0 + 20), SAGA_IGNORED);
    assert_int_equal(reply(r, 1, SAGA_PHASE_INVOKE, 1, T0 + 20), SAGA_IGNORED);
    assert_int_equal(r->s->steps[1].status, SAGA_STEP_DISPATCHED);
    /* An early wake is not the timeout. */
    assert_int_equal(wake(r, T0 + 1000), SAGA_IGNORED);
    assert_int_equal(signal(r, "approval", json_pack("{s:s}", "by", "ann"), 0, T0 + 30),
                     SAGA_APPLIED);
    assert_true(has(r, SAGA_HIST_SIGNAL_RECEIVED));
    assert_int_equal(r->s->steps[1].status, SAGA_STEP_SUCCEEDED);
    assert_string_equal(json_string_value(json_object_get(r->s->steps[1].output, "by")),
                        "ann");
    a = first_send(r);
    assert_non_null(a);
    assert_int_equal(a->step, 2);
    assert_string_equal(json_string_value(json_object_get(a->payload, "approved_by")),
                        "ann");
    /* A duplicate of the signal is no longer awaited. */
    assert_int_equal(signal(r, "approval", json_object(), 0, T0 + 40), SAGA_IGNORED);
    assert_int_equal(reply(r, 2, SAGA_PHASE_INVOKE, 1, T0 + 50), SAGA_APPLIED);
    assert_int_equal(r->s->status, SAGA_ST_COMPLETED);
    finish(r);
}

static void test_a_no_compensates(void **state)
{
    run *r = start(approval);
    const saga_action *a;
    (void)state;
    reply(r, 0, SAGA_PHASE_INVOKE, 1, T0 + 10);
    assert_int_equal(signal(r, "approval", json_object(), 1, T0 + 30), SAGA_APPLIED);
    assert_int_equal(r->s->steps[1].status, SAGA_STEP_FAILED);
    assert_string_equal(
        json_string_value(json_object_get(r->s->steps[1].error, "message")),
        "the manager said no");
    assert_int_equal(r->s->status, SAGA_ST_COMPENSATING);
    a = first_send(r);
    assert_non_null(a);
    assert_int_equal(a->step, 0);
    assert_int_equal(a->phase, SAGA_PHASE_COMPENSATE);
    assert_int_equal(reply(r, 0, SAGA_PHASE_COMPENSATE, 1, T0 + 40), SAGA_APPLIED);
    assert_int_equal(r->s->status, SAGA_ST_COMPENSATED);
    finish(r);
}

static void test_timeout_fails_or_takes_the_default(void **state)
{
    run *r = start(approval);
    (void)state;
    reply(r, 0, SAGA_PHASE_INVOKE, 1, T0 + 10);
    assert_int_equal(wake(r, T0 + 10 + H48), SAGA_APPLIED);
    assert_true(has(r, SAGA_HIST_SIGNAL_TIMED_OUT));
    assert_int_equal(r->s->steps[1].status, SAGA_STEP_FAILED);
    assert_string_equal(json_string_value(json_object_get(r->s->steps[1].error, "code")),
                        "signal_timeout");
    assert_int_equal(r->s->status, SAGA_ST_COMPENSATING);
    assert_int_equal(signal(r, "approval", json_object(), 0, T0 + H48 + 20),
                     SAGA_IGNORED);
    finish(r);

    r = start(with_default);
    reply(r, 0, SAGA_PHASE_INVOKE, 1, T0 + 10);
    assert_int_equal(wake(r, T0 + 10 + 2 * 3600 * 1000), SAGA_APPLIED);
    assert_int_equal(r->s->steps[1].status, SAGA_STEP_SUCCEEDED);
    assert_true(json_is_true(json_object_get(r->s->steps[1].output, "auto")));
    assert_string_equal(
        json_string_value(json_object_get(first_send(r)->payload, "approved_by")),
        "nobody");
    finish(r);
}

static void test_waits_without_a_timer(void **state)
{
    run *r = start(forever);
    (void)state;
    /* The first step waits: no command, no timer; only a row. */
    assert_null(first_send(r));
    assert_int_equal(r->s->wake_at, 0);
    assert_int_equal(signal(r, "approval", NULL, 0, T0 + 9LL * 24 * 3600 * 1000),
                     SAGA_APPLIED);
    assert_non_null(first_send(r));
    finish(r);
}

static void expect_problems(const char *json, const char *want)
{
    saga_definition *d = NULL;
    saga_def_problems p = {0};
    char got[4096] = "";
    size_t len = 0;
    assert_int_equal(saga_definition_parse(json, strlen(json), &d, &p), SAGA_EDEF);
    for (int k = 0; k < p.count && k < 64; k++)
        len += (size_t)snprintf(got + len, sizeof got - len, "%s: %s\n", p.items[k].where,
                                p.items[k].message);
    if (strcmp(got, want) != 0)
        fail_msg("--- got\n%s--- expected\n%s", got, want);
}

static void test_definition_rules(void **state)
{
    (void)state;
    expect_problems(
        "{\"name\":\"x\",\"steps\":[{\"name\":\"w\",\"service\":\"s\",\"timeout\":\"1s\","
        "\"wait\":{\"signal\":\"go\",\"default\":{}}}]}",
        "steps[0].service: a wait step sends nothing and has nothing to undo: "
        "\"service\" "
        "has no place here (remove it, or make this a step a service runs)\n"
        "steps[0].timeout: a wait step sends nothing and has nothing to undo: "
        "\"timeout\" "
        "has no place here (its timeout is wait.timeout)\n"
        "steps[0].wait.default: a default is taken at the timeout, and this wait has "
        "none "
        "(add \"timeout\")\n");
    expect_problems("{\"name\":\"x\",\"steps\":[{\"name\":\"w\",\"wait\":\"go\"}]}",
                    "steps[0].wait: found a string, expected an object such as "
                    "{\"signal\": \"approval\", \"timeout\": \"48h\"}\n");
    expect_problems(
        "{\"name\":\"x\",\"steps\":[{\"name\":\"w\",\"wait\":{\"sig\":\"go\"}}]}",
        "steps[0].wait: unknown key \"sig\" (expected one of: signal, timeout, default)\n"
        "steps[0].wait.signal: missing (expected a string)\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signal_ends_the_wait),
        cmocka_unit_test(test_a_no_compensates),
        cmocka_unit_test(test_timeout_fails_or_takes_the_default),
        cmocka_unit_test(test_waits_without_a_timer),
        cmocka_unit_test(test_definition_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
