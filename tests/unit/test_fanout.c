/* Fan-out steps ("for_each"): one command per element with its index and
 * a command id of its own, at most `concurrency` in flight; the list of
 * outputs; a failing element compensates exactly the elements that
 * succeeded or may have, in reverse, then the steps before; limits,
 * retries, timeouts, holds, deadlines and operators per element; an
 * exhaustive table over the statuses of the saga, the step and two
 * elements and every event; and the definition's rules. Pure. */
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

/* An order: the payment is authorised, then each line's stock reserved,
 * then the order confirmed with the first reservation's id. */
static const char *const order =
    "{\"name\":\"order\",\"defaults\":{\"timeout\":\"1s\",\"retry\":{\"max_attempts\":2,"
    " \"backoff\":\"100ms\",\"jitter\":0}},\"steps\":["
    "{\"name\":\"authorize\",\"service\":\"payment\",\"action\":\"authorize\","
    " \"compensation\":\"void\"},"
    "{\"name\":\"reserve\",\"service\":\"inventory\",\"action\":\"reserve_line\","
    " \"compensation\":\"release_line\",\"for_each\":\"${input.lines}\","
    " \"concurrency\":2,\"max_elements\":1000,"
    " \"input\":{\"sku\":\"${element.sku}\",\"qty\":\"${element.qty}\","
    "  \"line\":\"${index}\",\"order\":\"${input.order}\"}},"
    "{\"name\":\"confirm\",\"service\":\"orders\",\"action\":\"confirm\","
    " \"input\":{\"first\":\"${steps.reserve.output[0].reservation}\"}}]}";

typedef struct run {
    saga_definition *def;
    saga_state *s;
    saga_actions acts;
    const char *reason;
} run;

static json_t *lines(int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(
            a, json_pack("{s:s+, s:i}", "sku", "sku-", i == 0 ? "0" : "n", "qty", i + 1));
    return a;
}

static run *prepare(const char *json, json_t *input)
{
    run *r = calloc(1, sizeof *r);
    saga_def_problems probs = {0};
    if (saga_definition_parse(json, strlen(json), &r->def, &probs) != SAGA_OK)
        fail_msg("%s: %s", probs.items[0].where, probs.items[0].message);
    r->def->version = 1;
    r->s = saga_state_new(r->def, ID, input);
    json_decref(input);
    return r;
}

static int apply(run *r, const saga_event *ev)
{
    saga_actions_clear(&r->acts);
    return saga_machine_apply(r->s, ev, &r->acts, &r->reason);
}

static run *start_n(const char *json, int n)
{
    run *r = prepare(json, json_pack("{s:o, s:s}", "lines", lines(n), "order", "o-1"));
    saga_event ev = {.kind = SAGA_EV_START, .now = T0, .random = 0.5};
    assert_int_equal(apply(r, &ev), SAGA_APPLIED);
    return r;
}

static void finish(run *r)
{
    saga_actions_clear(&r->acts);
    saga_state_free(r->s);
    saga_definition_free(r->def);
    free(r);
}

/* A reply for step i (element e, or -1 for a step without one). */
static int reply_el(run *r, int i, int e, saga_phase phase, saga_reply_status status,
                    int attempt, int64_t now)
{
    char cid[160];
    saga_reply rep = {0};
    saga_event ev = {.kind = SAGA_EV_REPLY, .now = now, .random = 0.5, .reply = &rep};
    int rc;
    saga_command_id_format_element(cid, sizeof cid, ID, i, phase, e);
    memcpy(rep.saga_id, ID, sizeof rep.saga_id);
    rep.v = e >= 0 ? SAGA_PROTOCOL_VERSION_ELEMENTS : SAGA_PROTOCOL_VERSION;
    rep.element = e >= 0 ? e : 0;
    rep.step = i;
    rep.phase = phase;
    rep.command_id = cid;
    rep.attempt = attempt;
    rep.status = status;
    rep.output = status == SAGA_REPLY_OK
                     ? json_pack("{s:s+}", "reservation", "r-", e == 0 ? "0" : "x")
                     : NULL;
    rep.error_code = status == SAGA_REPLY_OK ? NULL : "no_stock";
    rep.error_message = status == SAGA_REPLY_OK ? NULL : "out of stock";
    rc = apply(r, &ev);
    json_decref(rep.output);
    return rc;
}

static int ok_el(run *r, int i, int e, saga_phase phase, int64_t now)
{
    const saga_step_state *st = &r->s->steps[i];
    int attempt = e >= 0 ? st->elements[e].attempts : st->attempts;
    return reply_el(r, i, e, phase, SAGA_REPLY_OK, attempt, now);
}

static int count_sends(const run *r, int step, saga_phase phase)
{
    int n = 0;
    for (int i = 0; i < r->acts.n; i++)
        n += r->acts.items[i].kind == SAGA_ACT_SEND && r->acts.items[i].step == step &&
             r->acts.items[i].phase == phase;
    return n;
}

static const saga_action *nth_send(const run *r, int k)
{
    for (int i = 0; i < r->acts.n; i++)
        if (r->acts.items[i].kind == SAGA_ACT_SEND && k-- == 0)
            return &r->acts.items[i];
    return NULL;
}

/* Step 0 done, the fan-out under way. */
static run *at_fanout(int n)
{
    run *r = start_n(order, n);
    assert_int_equal(ok_el(r, 0, -1, SAGA_PHASE_INVOKE, T0 + 1), SAGA_APPLIED);
    return r;
}

static void test_elements_run_with_index_and_own_command_ids(void **state)
{
    run *r = at_fanout(5);
    const saga_action *a0 = nth_send(r, 0), *a1 = nth_send(r, 1);
    (void)state;
    assert_int_equal(r->s->steps[1].status, SAGA_STEP_DISPATCHED);
    assert_int_equal(r->s->steps[1].nelements, 5);
    /* concurrency 2: two sent, three waiting */
    assert_int_equal(count_sends(r, 1, SAGA_PHASE_INVOKE), 2);
    assert_non_null(a0);
    assert_non_null(a1);
    assert_int_equal(a0->element, 0);
    assert_int_equal(a1->element, 1);
    assert_string_equal(json_string_value(json_object_get(a1->payload, "sku")), "sku-n");
    assert_int_equal(json_integer_value(json_object_get(a1->payload, "qty")), 2);
    assert_int_equal(json_integer_value(json_object_get(a1->payload, "line")), 1);
    assert_string_equal(json_string_value(json_object_get(a1->payload, "order")), "o-1");
    assert_int_equal(r->s->steps[1].elements[2].status, SAGA_STEP_PENDING);
    /* A timer: the earliest element's timeout. */
    assert_int_equal(r->s->steps[1].due_at, T0 + 1 + 1000);
    assert_int_equal(r->s->wake_at, T0 + 1 + 1000);
    /* Each element's answer frees a place for the next. */
    for (int e = 0; e < 5; e++) {
        assert_int_equal(ok_el(r, 1, e, SAGA_PHASE_INVOKE, T0 + 10 + e), SAGA_APPLIED);
        if (e + 2 < 5) {
            assert_int_equal(count_sends(r, 1, SAGA_PHASE_INVOKE), 1);
            assert_int_equal(nth_send(r, 0)->element, e + 2);
        }
    }
    /* All five: the step's output is the list, and the next step reads it. */
    assert_int_equal(r->s->steps[1].status, SAGA_STEP_SUCCEEDED);
    assert_true(json_is_array(r->s->steps[1].output));
    assert_int_equal(json_array_size(r->s->steps[1].output), 5);
    assert_int_equal(r->s->cursor, 2);
    assert_int_equal(count_sends(r, 2, SAGA_PHASE_INVOKE), 1);
    assert_string_equal(
        json_string_value(json_object_get(nth_send(r, 0)->payload, "first")), "r-0");
    assert_int_equal(ok_el(r, 2, -1, SAGA_PHASE_INVOKE, T0 + 100), SAGA_APPLIED);
    assert_int_equal(r->s->status, SAGA_ST_COMPLETED);
    assert_int_equal(r->s->wake_at, 0);
    finish(r);
}

/* Elements 0 and 1 succeeded, 2 fails for good while 3 is in flight and
 * 4 was never sent: 3 (may have acted), 1 and 0 are undone, in reverse,
 * two at a time; 2 and 4 are not; then the step before. */
static void test_failing_element_compensates_exactly_what_may_have_acted(void **state)
{
    run *r = at_fanout(5);
    (void)state;
    assert_int_equal(ok_el(r, 1, 0, SAGA_PHASE_INVOKE, T0 + 10), SAGA_APPLIED);
    assert_int_equal(ok_el(r, 1, 1, SAGA_PHASE_INVOKE, T0 + 11), SAGA_APPLIED);
    /* 2 and 3 in flight now */
    assert_int_equal(reply_el(r, 1, 2, SAGA_PHASE_INVOKE, SAGA_REPLY_FAILED, 1, T0 + 12),
                     SAGA_APPLIED);
    assert_int_equal(r->s->status, SAGA_ST_COMPENSATING);
    assert_int_equal(r->s->steps[1].status, SAGA_STEP_COMPENSATING);
    assert_int_equal(r->s->steps[1].elements[2].status, SAGA_STEP_FAILED);
    assert_int_equal(r->s->steps[1].elements[4].status, SAGA_STEP_PENDING);
    /* reverse order, two at a time: 3 and 1 */
    assert_int_equal(count_sends(r, 1, SAGA_PHASE_COMPENSATE), 2);
    assert_int_equal(nth_send(r, 0)->element, 3);
    assert_int_equal(nth_send(r, 1)->element, 1);
    assert_int_equal(r->s->steps[1].elements[3].status, SAGA_STEP_COMPENSATING);
    /* the compensation sees the element's input and output */
    assert_non_null(json_object_get(nth_send(r, 1)->payload, "output"));
    /* a late answer of 3's action changes nothing */
    assert_int_equal(ok_el(r, 1, 3, SAGA_PHASE_INVOKE, T0 + 13), SAGA_IGNORED);
    assert_int_equal(ok_el(r, 1, 3, SAGA_PHASE_COMPENSATE, T0 + 14), SAGA_APPLIED);
    assert_int_equal(count_sends(r, 1, SAGA_PHASE_COMPENSATE), 1);
    assert_int_equal(nth_send(r, 0)->element, 0);
    assert_int_equal(ok_el(r, 1, 1, SAGA_PHASE_COMPENSATE, T0 + 15), SAGA_APPLIED);
    assert_int_equal(count_sends(r, 1, SAGA_PHASE_COMPENSATE), 0);
    assert_int_equal(ok_el(r, 1, 0, SAGA_PHASE_COMPENSATE, T0 + 16), SAGA_APPLIED);
    /* then the step before */
    assert_int_equal(r->s->steps[1].status, SAGA_STEP_COMPENSATED);
    assert_int_equal(r->s->cursor, 0);
    assert_int_equal(count_sends(r, 0, SAGA_PHASE_COMPENSATE), 1);
    assert_int_equal(ok_el(r, 0, -1, SAGA_PHASE_COMPENSATE, T0 + 17), SAGA_APPLIED);
    assert_int_equal(r->s->status, SAGA_ST_COMPENSATED);
    assert_int_equal(r->s->steps[1].elements[2].status, SAGA_STEP_FAILED);
    assert_int_equal(r->s->steps[1].elements[4].status, SAGA_STEP_PENDING);
    finish(r);
}

/* 1,000 elements, 10 at a time; element 500 fails: exactly the elements
 * that succeeded or were in flight are compensated, each once. */
static void test_thousand_elements_one_failing(void **state)
{
    static const char *const big =
        "{\"name\":\"big\",\"steps\":["
        "{\"name\":\"each\",\"service\":\"s\",\"action\":\"do\",\"compensation\":"
        "\"undo\","
        " \"for_each\":\"${input.lines}\",\"concurrency\":10,"
        " \"input\":{\"i\":\"${index}\"}},"
        "{\"name\":\"last\",\"service\":\"s\",\"action\":\"last\"}]}";
    run *r = prepare(big, json_pack("{s:o}", "lines", lines(1000)));
    saga_event ev = {.kind = SAGA_EV_START, .now = T0, .random = 0.5};
    int64_t now = T0;
    int sent = 0, compensations = 0, may_have_acted = 0;
    unsigned char undone[1000] = {0};
    (void)state;
    assert_int_equal(apply(r, &ev), SAGA_APPLIED);
    sent = count_sends(r, 0, SAGA_PHASE_INVOKE);
    assert_int_equal(sent, 10);
    /* answer in order until 500, which fails */
    for (int e = 0; e < 500; e++) {
        assert_int_equal(ok_el(r, 0, e, SAGA_PHASE_INVOKE, ++now), SAGA_APPLIED);
        sent += count_sends(r, 0, SAGA_PHASE_INVOKE);
    }
    assert_int_equal(sent, 510);
    assert_int_equal(reply_el(r, 0, 500, SAGA_PHASE_INVOKE, SAGA_REPLY_FAILED, 1, ++now),
                     SAGA_APPLIED);
    assert_int_equal(r->s->status, SAGA_ST_COMPENSATING);
    for (int e = 0; e < 1000; e++) {
        saga_step_status es = r->s->steps[0].elements[e].status;
        if (es == SAGA_STEP_COMPENSATING || es == SAGA_STEP_SUCCEEDED ||
            es == SAGA_STEP_UNKNOWN)
            may_have_acted++;
    }
    assert_int_equal(may_have_acted, 509); /* 0..499 and 501..509 */
    while (r->s->status == SAGA_ST_COMPENSATING) {
        int k = 0;
        const saga_action *a;
        int out[16], nout = 0;
        while ((a = nth_send(r, k++)) != NULL) {
            assert_int_equal(a->phase, SAGA_PHASE_COMPENSATE);
            assert_int_equal(undone[a->element], 0);
            undone[a->element] = 1;
            compensations++;
        }
        /* answer every compensation in flight */
        for (int e = 0; e < 1000 && nout < 16; e++)
            if (r->s->steps[0].elements[e].status == SAGA_STEP_COMPENSATING)
                out[nout++] = e;
        assert_true(nout > 0 && nout <= 10);
        assert_int_equal(ok_el(r, 0, out[0], SAGA_PHASE_COMPENSATE, ++now), SAGA_APPLIED);
    }
    assert_int_equal(r->s->status, SAGA_ST_COMPENSATED);
    assert_int_equal(compensations, 509);
    assert_int_equal(undone[500], 0);
    for (int e = 510; e < 1000; e++)
        assert_int_equal(undone[e], 0);
    finish(r);
}

static void test_limits_and_lists(void **state)
{
    static const char *const small =
        "{\"name\":\"o\",\"steps\":["
        "{\"name\":\"a\",\"service\":\"s\",\"action\":\"a\",\"compensation\":\"u\"},"
        "{\"name\":\"each\",\"service\":\"s\",\"action\":\"do\",\"compensation\":"
        "\"undo\","
        " \"for_each\":\"${input.lines}\",\"max_elements\":3},"
        "{\"name\":\"z\",\"service\":\"s\",\"action\":\"z\"}]}";
    json_t *inputs[3] = {json_pack("{s:o}", "lines", lines(4)),
                         json_pack("{s:s}", "lines", "not a list"), json_object()};
    const char *want[3] = {"has 4 elements; this step takes at most 3",
                           "is a string, not a list", "names nothing"};
    (void)state;
    for (int k = 0; k < 3; k++) {
        run *r = prepare(small, inputs[k]);
        saga_event ev = {.kind = SAGA_EV_START, .now = T0, .random = 0.5};
        const char *msg;
        assert_int_equal(apply(r, &ev), SAGA_APPLIED);
        assert_int_equal(ok_el(r, 0, -1, SAGA_PHASE_INVOKE, T0 + 1), SAGA_APPLIED);
        /* the step fails with what is wrong; nothing of it to undo */
        assert_int_equal(r->s->steps[1].status, SAGA_STEP_FAILED);
        msg = json_string_value(json_object_get(r->s->steps[1].error, "message"));
        assert_non_null(strstr(msg, want[k]));
        assert_string_equal(
            json_string_value(json_object_get(r->s->steps[1].error, "code")), "for_each");
        assert_int_equal(r->s->status, SAGA_ST_COMPENSATING);
        assert_int_equal(count_sends(r, 1, SAGA_PHASE_COMPENSATE), 0);
        assert_int_equal(count_sends(r, 0, SAGA_PHASE_COMPENSATE), 1);
        finish(r);
    }
    /* An empty list: done at once, nothing sent, nothing to undo. */
    {
        run *r = prepare(small, json_pack("{s:[]}", "lines"));
        saga_event ev = {.kind = SAGA_EV_START, .now = T0, .random = 0.5};
        assert_int_equal(apply(r, &ev), SAGA_APPLIED);
        assert_int_equal(ok_el(r, 0, -1, SAGA_PHASE_INVOKE, T0 + 1), SAGA_APPLIED);
        assert_int_equal(r->s->steps[1].status, SAGA_STEP_SUCCEEDED);
        assert_int_equal(json_array_size(r->s->steps[1].output), 0);
        assert_int_equal(r->s->cursor, 2);
        finish(r);
    }
}

static void test_replies_must_name_their_element(void **state)
{
    run *r = at_fanout(3);
    (void)state;
    /* a version 1 reply (no element) for a fan-out step */
    assert_int_equal(ok_el(r, 1, -1, SAGA_PHASE_INVOKE, T0 + 2), SAGA_IGNORED);
    /* an element the step does not have */
    assert_int_equal(reply_el(r, 1, 7, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 2),
                     SAGA_REJECTED);
    /* one not sent yet */
    assert_int_equal(reply_el(r, 1, 2, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 2),
                     SAGA_IGNORED);
    /* an attempt never made */
    assert_int_equal(reply_el(r, 1, 1, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 2, T0 + 2),
                     SAGA_REJECTED);
    /* the right one, then its duplicate */
    assert_int_equal(ok_el(r, 1, 1, SAGA_PHASE_INVOKE, T0 + 3), SAGA_APPLIED);
    assert_int_equal(reply_el(r, 1, 1, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1, T0 + 4),
                     SAGA_IGNORED);
    /* element 2 went out in its place, with a command id of its own */
    {
        char want[160];
        saga_command_id_format_element(want, sizeof want, ID, 1, SAGA_PHASE_INVOKE, 2);
        assert_string_equal(want, ID "/1/invoke/2");
    }
    finish(r);
}

static void test_element_retries_timeouts_and_unknown_outcome(void **state)
{
    run *r = at_fanout(2);
    saga_event wake = {.kind = SAGA_EV_WAKE, .random = 0.5};
    (void)state;
    /* element 0 answers retry: only it waits; element 1 times out */
    assert_int_equal(reply_el(r, 1, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_RETRY, 1, T0 + 5),
                     SAGA_APPLIED);
    assert_int_equal(r->s->steps[1].elements[0].due_at, T0 + 105);
    assert_int_equal(r->s->steps[1].due_at, T0 + 105);
    wake.now = T0 + 105;
    assert_int_equal(apply(r, &wake), SAGA_APPLIED);
    assert_int_equal(count_sends(r, 1, SAGA_PHASE_INVOKE), 1);
    assert_int_equal(nth_send(r, 0)->attempt, 2);
    assert_int_equal(nth_send(r, 0)->element, 0);
    /* element 1's timeout (sent at T0+1, 1 s) */
    wake.now = T0 + 1001;
    assert_int_equal(apply(r, &wake), SAGA_APPLIED);
    assert_int_equal(r->s->steps[1].elements[1].awaiting, 0);
    wake.now = T0 + 1101;
    assert_int_equal(apply(r, &wake), SAGA_APPLIED);
    assert_int_equal(nth_send(r, 0)->element, 1);
    assert_int_equal(nth_send(r, 0)->attempt, 2);
    /* its second timeout spends its budget: unknown, the step gives up,
     * and element 1 (may have acted) is compensated; 0, in flight, too */
    wake.now = T0 + 2101;
    assert_int_equal(apply(r, &wake), SAGA_APPLIED);
    assert_int_equal(r->s->steps[1].elements[1].status, SAGA_STEP_COMPENSATING);
    assert_int_equal(r->s->steps[1].elements[0].status, SAGA_STEP_COMPENSATING);
    assert_int_equal(r->s->status, SAGA_ST_COMPENSATING);
    finish(r);
}

static void test_hold_of_an_element(void **state)
{
    run *r = at_fanout(3);
    int idx = -1;
    (void)state;
    for (int i = 0; i < r->acts.n; i++)
        if (r->acts.items[i].kind == SAGA_ACT_SEND && r->acts.items[i].element == 1)
            idx = i;
    assert_true(idx >= 0);
    assert_int_equal(
        saga_machine_hold(r->s, &r->acts, idx, T0 + 500, SAGA_HIST_NONE, NULL), SAGA_OK);
    assert_int_equal(r->s->steps[1].elements[1].attempts, 0);
    assert_int_equal(r->s->steps[1].elements[1].due_at, T0 + 500);
    assert_int_equal(r->s->steps[1].elements[0].attempts, 1);
    assert_int_equal(r->s->steps[1].due_at, T0 + 500);
    assert_int_equal(count_sends(r, 1, SAGA_PHASE_INVOKE), 1);
    /* at its time it goes out as attempt 1 */
    {
        saga_event wake = {.kind = SAGA_EV_WAKE, .now = T0 + 500, .random = 0.5};
        assert_int_equal(apply(r, &wake), SAGA_APPLIED);
        assert_int_equal(nth_send(r, 0)->element, 1);
        assert_int_equal(nth_send(r, 0)->attempt, 1);
    }
    finish(r);
}

static void test_deadline_and_operators(void **state)
{
    run *r = at_fanout(3);
    saga_event op = {.kind = SAGA_EV_OP_RETRY,
                     .now = T0 + 50,
                     .random = 0.5,
                     .actor = "ops",
                     .reason = "stuck"};
    (void)state;
    /* an operator retry re-sends both elements in flight, fresh budgets */
    assert_int_equal(apply(r, &op), SAGA_APPLIED);
    assert_int_equal(count_sends(r, 1, SAGA_PHASE_INVOKE), 2);
    assert_int_equal(r->s->steps[1].elements[0].attempts, 2);
    assert_int_equal(r->s->steps[1].elements[0].attempt_base, 1);
    assert_int_equal(ok_el(r, 1, 0, SAGA_PHASE_INVOKE, T0 + 60), SAGA_APPLIED);
    /* compensation of element 0 fails for good: stuck */
    op.kind = SAGA_EV_OP_COMPENSATE;
    op.now = T0 + 70;
    assert_int_equal(apply(r, &op), SAGA_APPLIED);
    assert_int_equal(r->s->status, SAGA_ST_COMPENSATING);
    /* 1 and 2 were in flight (1: sent twice; 2: sent once): all three */
    assert_int_equal(count_sends(r, 1, SAGA_PHASE_COMPENSATE), 2);
    assert_int_equal(
        reply_el(r, 1, 2, SAGA_PHASE_COMPENSATE, SAGA_REPLY_FAILED, 1, T0 + 80),
        SAGA_APPLIED);
    assert_int_equal(r->s->status, SAGA_ST_FAILED);
    assert_int_equal(r->s->steps[1].status, SAGA_STEP_COMPENSATION_FAILED);
    assert_int_equal(r->s->wake_at, 0);
    /* retry: element 2's compensation again, and 1 still to finish */
    op.kind = SAGA_EV_OP_RETRY;
    op.now = T0 + 90;
    assert_int_equal(apply(r, &op), SAGA_APPLIED);
    assert_int_equal(r->s->status, SAGA_ST_COMPENSATING);
    assert_int_equal(count_sends(r, 1, SAGA_PHASE_COMPENSATE), 2);
    assert_int_equal(ok_el(r, 1, 2, SAGA_PHASE_COMPENSATE, T0 + 91), SAGA_APPLIED);
    /* an operator skips what is left of the step's compensation */
    op.kind = SAGA_EV_OP_SKIP;
    op.step = 1;
    op.now = T0 + 92;
    assert_int_equal(apply(r, &op), SAGA_APPLIED);
    assert_int_equal(r->s->steps[1].status, SAGA_STEP_COMPENSATED);
    for (int e = 0; e < 3; e++)
        assert_int_equal(r->s->steps[1].elements[e].status, SAGA_STEP_COMPENSATED);
    assert_int_equal(r->s->cursor, 0);
    finish(r);

    /* a deadline while elements are out: all of them undone */
    {
        static const char *const timed =
            "{\"name\":\"o\",\"deadline\":\"10s\",\"steps\":["
            "{\"name\":\"each\",\"service\":\"s\",\"action\":\"do\","
            " \"compensation\":\"undo\",\"for_each\":\"${input.lines}\","
            " \"timeout\":\"1h\"}]}";
        saga_event ev = {.kind = SAGA_EV_START, .now = T0, .random = 0.5};
        r = prepare(timed, json_pack("{s:o}", "lines", lines(3)));
        assert_int_equal(apply(r, &ev), SAGA_APPLIED);
        assert_int_equal(r->s->wake_at, T0 + 10000);
        ev.kind = SAGA_EV_WAKE;
        ev.now = T0 + 10000;
        assert_int_equal(apply(r, &ev), SAGA_APPLIED);
        assert_int_equal(count_sends(r, 0, SAGA_PHASE_COMPENSATE), 3);
        finish(r);
    }
    /* a skip going forward: the skipped elements get the given output */
    {
        r = at_fanout(2);
        op.kind = SAGA_EV_OP_SKIP;
        op.step = 1;
        op.now = T0 + 5;
        op.output = json_pack("{s:s}", "reservation", "by-hand");
        assert_int_equal(ok_el(r, 1, 0, SAGA_PHASE_INVOKE, T0 + 4), SAGA_APPLIED);
        assert_int_equal(apply(r, &op), SAGA_APPLIED);
        json_decref(op.output);
        assert_int_equal(r->s->steps[1].status, SAGA_STEP_SKIPPED);
        assert_int_equal(json_array_size(r->s->steps[1].output), 2);
        assert_string_equal(json_string_value(json_object_get(
                                json_array_get(r->s->steps[1].output, 1), "reservation")),
                            "by-hand");
        assert_int_equal(r->s->cursor, 2);
        finish(r);
    }
}

static void test_element_input_that_does_not_resolve(void **state)
{
    static const char *const bad = "{\"name\":\"o\",\"steps\":["
                                   "{\"name\":\"each\",\"service\":\"s\",\"action\":"
                                   "\"do\",\"compensation\":\"undo\","
                                   " \"for_each\":\"${input.lines}\",\"concurrency\":1,"
                                   " \"input\":{\"sku\":\"${element.sku}\"}}]}";
    run *r = prepare(bad, json_pack("{s:[{s:s},{s:i}]}", "lines", "sku", "a", "qty", 1));
    saga_event ev = {.kind = SAGA_EV_START, .now = T0, .random = 0.5};
    (void)state;
    assert_int_equal(apply(r, &ev), SAGA_APPLIED);
    assert_int_equal(ok_el(r, 0, 0, SAGA_PHASE_INVOKE, T0 + 1), SAGA_APPLIED);
    /* element 1 has no sku: it fails unsent; element 0 is undone */
    assert_int_equal(r->s->steps[0].elements[1].status, SAGA_STEP_FAILED);
    assert_int_equal(r->s->steps[0].elements[1].attempts, 0);
    assert_int_equal(count_sends(r, 0, SAGA_PHASE_COMPENSATE), 1);
    assert_int_equal(nth_send(r, 0)->element, 0);
    finish(r);
}

/* ---- the exhaustive table ---- */

typedef struct snapshot {
    saga_status status;
    int cursor;
    int64_t wake_at;
    saga_step_status st, el[2];
    int attempts[2], awaiting[2];
    int64_t due[2];
} snapshot;

static void take(const saga_state *s, snapshot *sn)
{
    memset(sn, 0, sizeof *sn);
    sn->status = s->status;
    sn->cursor = s->cursor;
    sn->wake_at = s->wake_at;
    sn->st = s->steps[1].status;
    for (int e = 0; e < 2; e++) {
        sn->el[e] = s->steps[1].elements[e].status;
        sn->attempts[e] = s->steps[1].elements[e].attempts;
        sn->awaiting[e] = s->steps[1].elements[e].awaiting;
        sn->due[e] = s->steps[1].elements[e].due_at;
    }
}

enum { TE_OK, TE_FAILED, TE_RETRY, TE_COUNT_PER_ELEMENT };

static void test_every_status_of_saga_step_and_two_elements(void **state)
{
    int applied = 0, ignored = 0, rejected = 0;
    saga_definition *def;
    saga_def_problems probs = {0};
    (void)state;
    assert_int_equal(saga_definition_parse(order, strlen(order), &def, &probs), SAGA_OK);
    def->version = 1;
    for (int ss = 1; ss < SAGA_STATUS_COUNT; ss++)
        for (int ps = 0; ps < SAGA_STEP_STATUS_COUNT; ps++)
            for (int e0 = 0; e0 < SAGA_STEP_STATUS_COUNT; e0++)
                for (int e1 = 0; e1 < SAGA_STEP_STATUS_COUNT; e1++)
                    for (int ev_i = 0; ev_i < 2 * 2 * TE_COUNT_PER_ELEMENT + 7; ev_i++) {
                        run r = {def, NULL, {0}, NULL};
                        snapshot before, after;
                        json_t *input =
                            json_pack("{s:o, s:s}", "lines", lines(2), "order", "o");
                        int rc;
                        r.s = saga_state_new(def, ID, input);
                        json_decref(input);
                        r.s->status = (saga_status)ss;
                        r.s->cursor = 1;
                        r.s->steps[0].status = SAGA_STEP_SUCCEEDED;
                        r.s->steps[0].output = json_object();
                        r.s->steps[1].status = (saga_step_status)ps;
                        r.s->steps[1].attempts = 1;
                        r.s->steps[1].elements = calloc(2, sizeof(saga_step_state));
                        r.s->steps[1].nelements = 2;
                        r.s->steps[1].elements[0].status = (saga_step_status)e0;
                        r.s->steps[1].elements[1].status = (saga_step_status)e1;
                        for (int e = 0; e < 2; e++) {
                            r.s->steps[1].elements[e].attempts = 1;
                            r.s->steps[1].elements[e].awaiting = 1;
                            r.s->steps[1].elements[e].due_at = T0 + 1000 + e;
                        }
                        r.s->steps[1].due_at = T0 + 1000;
                        r.s->steps[1].awaiting = 1;
                        r.s->wake_at = T0 + 1000;
                        take(r.s, &before);
                        if (ev_i < 12) {
                            int e = ev_i / 6, k = ev_i % 6;
                            saga_phase ph =
                                k < 3 ? SAGA_PHASE_INVOKE : SAGA_PHASE_COMPENSATE;
                            rc = reply_el(&r, 1, e, ph, (saga_reply_status)(k % 3), 1,
                                          T0 + 10);
                        } else if (ev_i == 12) {
                            rc = reply_el(&r, 1, -1, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, 1,
                                          T0 + 10);
                        } else if (ev_i == 13 || ev_i == 14) {
                            saga_event w = {.kind = SAGA_EV_WAKE,
                                            .now = ev_i == 13 ? T0 + 1001 : T0 + 10,
                                            .random = 0.5};
                            rc = apply(&r, &w);
                        } else {
                            saga_event o = {
                                .kind = (saga_event_kind)(SAGA_EV_OP_RETRY + (ev_i - 15)),
                                .now = T0 + 10,
                                .random = 0.5,
                                .actor = "table",
                                .reason = "table",
                                .step = 1};
                            if (ev_i - 15 > 3)
                                o.kind = SAGA_EV_OP_RESOLVE;
                            rc = apply(&r, &o);
                        }
                        take(r.s, &after);
                        if (rc != SAGA_APPLIED && rc != SAGA_IGNORED &&
                            rc != SAGA_REJECTED)
                            fail_msg("%d/%d/%d/%d/%d: result %d", ss, ps, e0, e1, ev_i,
                                     rc);
                        if (rc != SAGA_APPLIED) {
                            if (r.reason == NULL ||
                                memcmp(&before, &after, sizeof before) != 0 ||
                                r.acts.n != 0)
                                fail_msg("%s/%s/%s/%s/event %d: not applied but changed "
                                         "state or gave no reason",
                                         saga_status_name(ss), saga_step_status_name(ps),
                                         saga_step_status_name(e0),
                                         saga_step_status_name(e1), ev_i);
                            rc == SAGA_IGNORED ? ignored++ : rejected++;
                        } else {
                            int final = saga_status_is_final(after.status) ||
                                        after.status == SAGA_ST_FAILED;
                            applied++;
                            /* An ended saga has no timer; one going on has one
                             * (a fan-out whose elements all wait on a hold or
                             * answer always has its earliest element's). */
                            if (final && after.wake_at != 0)
                                fail_msg("%s/%s/%s/%s/event %d: ended with a timer",
                                         saga_status_name(ss), saga_step_status_name(ps),
                                         saga_step_status_name(e0),
                                         saga_step_status_name(e1), ev_i);
                            if (!final && after.wake_at == 0)
                                fail_msg("%s/%s/%s/%s/event %d: still %s but no timer",
                                         saga_status_name(ss), saga_step_status_name(ps),
                                         saga_step_status_name(e0),
                                         saga_step_status_name(e1), ev_i,
                                         saga_status_name(after.status));
                            /* No element is sent twice by one event. */
                            for (int i = 0; i < r.acts.n; i++)
                                for (int j = i + 1; j < r.acts.n; j++)
                                    if (r.acts.items[i].kind == SAGA_ACT_SEND &&
                                        r.acts.items[j].kind == SAGA_ACT_SEND &&
                                        r.acts.items[i].step == r.acts.items[j].step &&
                                        r.acts.items[i].element ==
                                            r.acts.items[j].element)
                                        fail_msg("event %d sent element %d twice", ev_i,
                                                 r.acts.items[i].element);
                        }
                        /* A reply without an element never moves a fan-out. */
                        if (ev_i == 12)
                            assert_int_not_equal(rc, SAGA_APPLIED);
                        if (ev_i == 14)
                            assert_int_not_equal(rc, SAGA_APPLIED);
                        saga_actions_clear(&r.acts);
                        saga_state_free(r.s);
                    }
    saga_definition_free(def);
    print_message("fan-out table: %d combinations: %d applied, %d ignored, %d rejected\n",
                  applied + ignored + rejected, applied, ignored, rejected);
    /* The classification as reviewed: a change moves these figures, and
     * must be looked at (and the figures updated) on purpose. */
    assert_int_equal(applied, 2120);
    assert_int_equal(ignored, 62680);
    assert_int_equal(rejected, 49200);
}

/* ---- the definition's rules ---- */

static void expect_problem(const char *steps, const char *where, const char *fragment)
{
    char json[2048];
    saga_definition *def = NULL;
    saga_def_problems probs = {0};
    int found = 0;
    snprintf(json, sizeof json, "{\"name\":\"x\",\"steps\":[%s]}", steps);
    if (saga_definition_parse(json, strlen(json), &def, &probs) == SAGA_OK) {
        saga_definition_free(def);
        fail_msg("accepted: %s", steps);
    }
    for (int i = 0; i < probs.count && i < 64; i++)
        if (strcmp(probs.items[i].where, where) == 0 &&
            strstr(probs.items[i].message, fragment) != NULL)
            found = 1;
    if (!found)
        fail_msg("no \"%s\" at %s for %s (first: %s: %s)", fragment, where, steps,
                 probs.items[0].where, probs.items[0].message);
}

#define SVC "\"service\":\"s\",\"action\":\"a\",\"compensation\":\"u\""

static void test_definition_rules(void **state)
{
    (void)state;
    expect_problem("{\"name\":\"a\"," SVC ",\"for_each\":\"lines\"}", "steps[0].for_each",
                   "is not a reference to a list");
    expect_problem("{\"name\":\"a\"," SVC ",\"for_each\":\"x ${input.lines}\"}",
                   "steps[0].for_each", "is not a reference to a list");
    expect_problem("{\"name\":\"a\"," SVC ",\"for_each\":[1]}", "steps[0].for_each",
                   "expected a reference to a list");
    expect_problem("{\"name\":\"a\"," SVC ",\"for_each\":\"${saga.id}\"}",
                   "steps[0].for_each", "is not a list");
    expect_problem("{\"name\":\"a\"," SVC ",\"for_each\":\"${steps.b.output}\"},"
                   "{\"name\":\"b\"," SVC "}",
                   "steps[0].for_each", "which does not run before this one");
    expect_problem("{\"name\":\"a\"," SVC ",\"for_each\":\"${steps.zz.output}\"}",
                   "steps[0].for_each", "names unknown step \"zz\"");
    expect_problem("{\"name\":\"a\"," SVC ",\"concurrency\":3}", "steps[0].concurrency",
                   "this step has no \"for_each\"");
    expect_problem("{\"name\":\"a\"," SVC
                   ",\"for_each\":\"${input.l}\",\"concurrency\":0}",
                   "steps[0].concurrency", "expected an integer from 1 to 1000");
    expect_problem("{\"name\":\"a\"," SVC
                   ",\"for_each\":\"${input.l}\",\"max_elements\":100001}",
                   "steps[0].max_elements", "expected an integer from 1 to 100000");
    expect_problem("{\"name\":\"a\"," SVC ",\"input\":{\"x\":\"${element.sku}\"}}",
                   "steps[0].input.x", "only the input of a step with \"for_each\"");
    expect_problem("{\"name\":\"a\"," SVC
                   ",\"for_each\":\"${input.l}\",\"input\":{\"x\":\"${index.y}\"}}",
                   "steps[0].input.x", "the index is a number");
    expect_problem("{\"name\":\"a\"," SVC
                   ",\"for_each\":\"${input.l}\",\"when\":\"${element.x} == 1\"}",
                   "steps[0].when, column 1", "only the input of a step with");
    expect_problem(
        "{\"name\":\"w\",\"wait\":{\"signal\":\"s\"},\"for_each\":\"${input.l}\"}",
        "steps[0].for_each", "it cannot fan out");
    expect_problem("{\"name\":\"a\",\"service\":\"s\",\"action\":\"a\",\"pivot\":true,"
                   "\"for_each\":\"${input.l}\"}",
                   "steps[0].for_each", "a pivot cannot fan out");
    expect_problem("{\"name\":\"a\",\"service\":\"s\",\"action\":\"a\","
                   "\"for_each\":\"${input.l}\"}",
                   "steps[0]", "fans out but has no compensation");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_elements_run_with_index_and_own_command_ids),
        cmocka_unit_test(test_failing_element_compensates_exactly_what_may_have_acted),
        cmocka_unit_test(test_thousand_elements_one_failing),
        cmocka_unit_test(test_limits_and_lists),
        cmocka_unit_test(test_replies_must_name_their_element),
        cmocka_unit_test(test_element_retries_timeouts_and_unknown_outcome),
        cmocka_unit_test(test_hold_of_an_element),
        cmocka_unit_test(test_deadline_and_operators),
        cmocka_unit_test(test_element_input_that_does_not_resolve),
        cmocka_unit_test(test_every_status_of_saga_step_and_two_elements),
        cmocka_unit_test(test_definition_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
