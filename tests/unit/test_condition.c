/* A step's "when" (core/saga_condition.c): the grammar's errors with their
 * columns, evaluation (numbers, strings, missing values, exists, not/and/
 * or), bounds on size and depth, and the machine running a saga whose
 * conditional steps are not run and never compensated. Pure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "saga_condition.h"
#include "saga_definition.h"
#include "saga_machine.h"

#define T0 1700000000000LL
#define ID "6f1c2f7e-8a1b-4c3d-9e2f-0123456789ab"

static void expect_error(const char *text, int column, const char *why)
{
    saga_condition *c = NULL;
    char got[300];
    int col = -1;
    assert_int_equal(saga_condition_parse(text, &c, &col, got, sizeof got), SAGA_EDEF);
    assert_null(c);
    if (col != column || strcmp(got, why) != 0)
        fail_msg("\"%s\": got column %d \"%s\", expected column %d \"%s\"", text, col,
                 got, column, why);
}

static void test_errors_say_where(void **state)
{
    char deep[200] = "", big[SAGA_CONDITION_MAX_BYTES + 10];
    (void)state;
    expect_error("", 1,
                 "expected a value (a ${reference}, a number, a 'string', true, false, "
                 "null, exists(...) or \"(\"), found the end");
    expect_error("${input.a} = 1", 12,
                 "\"=\" is not a comparison (==, !=, <, <=, >, >=)");
    expect_error("(${input.a} > 1", 1, "unclosed \"(\" (expected \")\")");
    expect_error("1 2", 3, "expected and, or or the end, found \"2\"");
    expect_error("'abc", 1, "unterminated string (expected a closing ')");
    expect_error("${input.a > 1", 1, "unterminated \"${\" (expected \"${...}\")");
    expect_error("exists(1)", 8, "exists( takes a ${reference}, found \"1\"");
    expect_error("exists ${input.a}", 8,
                 "expected \"(\" after exists, found \"${input.a}\"");
    expect_error("${input.a} > 1 and or", 20,
                 "expected a value (a ${reference}, a number, a 'string', true, false, "
                 "null, exists(...) or \"(\"), found \"or\"");
    expect_error("1e999 > 1", 1, "\"1e999\" is not a number");
    expect_error("0x10 > 1", 1, "\"0x10\" is not a number");
    expect_error("$x", 1,
                 "expected a value (a ${reference}, a number, a 'string', true, false, "
                 "null, exists(...) or \"(\"), found \"$\"");
    for (int i = 0; i < 40; i++)
        strcat(deep, "(");
    strcat(deep, "1");
    expect_error(deep, 33, "nested deeper than 32 levels at \"(\"");
    memset(big, ' ', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    expect_error(big, SAGA_CONDITION_MAX_BYTES + 1, "longer than 2000 bytes");
}

static int eval_text(const char *text, const char *ctx_json)
{
    saga_condition *c = NULL;
    char why[300];
    int col, r;
    json_t *ctx = json_loads(ctx_json, 0, NULL);
    if (saga_condition_parse(text, &c, &col, why, sizeof why) != SAGA_OK)
        fail_msg("\"%s\": column %d: %s", text, col, why);
    r = saga_condition_eval(c, ctx);
    saga_condition_free(c);
    json_decref(ctx);
    return r;
}

static void test_evaluation(void **state)
{
    const char *ctx =
        "{\"input\": {\"amount\": 1500, \"tier\": \"gold\", \"vip\": true, \"n\": null,"
        " \"items\": [{\"sku\": \"w\"}], \"o\": {\"a\": 1}},"
        " \"steps\": {\"check\": {\"output\": {\"score\": 640, \"flags\": []}}},"
        " \"saga\": {\"name\": \"loan\"}}";
    (void)state;
    assert_true(eval_text("${input.amount} > 1000", ctx));
    assert_false(eval_text("${input.amount} <= 1000", ctx));
    assert_true(eval_text("${input.amount} == 1500.0", ctx));
    assert_true(eval_text("${input.tier} == 'gold' and ${input.vip}", ctx));
    assert_true(eval_text("${input.tier} < \"silver\"", ctx));
    assert_false(eval_text("${input.tier} > 5", ctx)); /* different kinds */
    assert_true(eval_text("${input.tier} != 5", ctx));
    assert_true(eval_text("${steps.check.output.score} >= 600", ctx));
    assert_true(eval_text("${input.items[0].sku} == 'w'", ctx));
    assert_true(eval_text("${input.o} == ${input.o}", ctx));
    assert_true(
        eval_text("${steps.check.output.flags} == ${steps.check.output.flags}", ctx));
    /* missing: every comparison false but !=; exists false also for null */
    assert_false(eval_text("${input.coupon} == null", ctx));
    assert_false(eval_text("${input.coupon} < 1", ctx));
    assert_true(eval_text("${input.coupon} != 1", ctx));
    assert_false(eval_text("exists(${input.coupon})", ctx));
    assert_false(eval_text("exists(${input.n})", ctx));
    assert_true(eval_text("${input.n} == null", ctx));
    assert_true(eval_text("exists(${steps.check.output})", ctx));
    assert_false(eval_text("exists(${steps.approve.output})", ctx));
    /* a value alone is true only as the boolean true */
    assert_false(eval_text("${input.amount}", ctx));
    assert_false(eval_text("${input.tier}", ctx));
    assert_true(eval_text("true", ctx));
    /* precedence: not > and > or */
    assert_true(eval_text("false and false or true", ctx));
    assert_false(eval_text("false and (false or true)", ctx));
    assert_true(eval_text("not false and true", ctx));
    assert_false(eval_text("not (false or true)", ctx));
    assert_true(eval_text("(${input.amount} > 1) == true", ctx));
    assert_true(eval_text("'it\\'s' == \"it's\"", ctx));
    assert_true(eval_text("-5 < 1e1", ctx));
    assert_true(eval_text("${saga.name} == 'loan'", ctx));
}

/* ---- the machine ---- */

static const char *const loan =
    "{\"name\":\"loan\",\"defaults\":{\"timeout\":\"1s\"},\"steps\":["
    "{\"name\":\"check\",\"service\":\"credit\",\"action\":\"check\","
    " \"compensation\":\"forget\"},"
    "{\"name\":\"review\",\"service\":\"desk\",\"action\":\"review\","
    " \"compensation\":\"unreview\", \"when\":\"${input.amount} > 1000\"},"
    "{\"name\":\"audit\",\"service\":\"audit\",\"action\":\"log\",\"compensation\":null,"
    " \"group\":\"g\", \"when\":\"${steps.check.output.score} < 100\"},"
    "{\"name\":\"notify\",\"service\":\"mail\",\"action\":\"send\",\"compensation\":null,"
    " \"group\":\"g\", \"when\":\"exists(${steps.review.output})\"},"
    "{\"name\":\"pay\",\"service\":\"bank\",\"action\":\"pay\",\"compensation\":"
    "\"refund\"}"
    "]}";

typedef struct run {
    saga_definition *def;
    saga_state *s;
    saga_actions acts;
} run;

static run *start(int amount)
{
    run *r = calloc(1, sizeof *r);
    saga_def_problems probs = {0};
    json_t *input = json_pack("{s:i}", "amount", amount);
    saga_event ev = {.kind = SAGA_EV_START, .now = T0, .random = 0.5};
    if (saga_definition_parse(loan, strlen(loan), &r->def, &probs) != SAGA_OK)
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

/* Answer step i's command (phase, ok or failed) with output; the steps
 * sent by that apply, as a string of their indexes ("23"). */
static const char *answer(run *r, int i, saga_phase phase, int ok, json_t *output,
                          char *sent)
{
    char cid[128];
    saga_reply rep = {0};
    saga_event ev = {.kind = SAGA_EV_REPLY, .now = T0 + 10 * (i + 1), .random = 0.5};
    size_t n = 0;
    saga_command_id_format(cid, sizeof cid, ID, i, phase);
    memcpy(rep.saga_id, ID, sizeof rep.saga_id);
    rep.step = i;
    rep.phase = phase;
    rep.command_id = cid;
    rep.attempt = r->s->steps[i].attempts;
    rep.status = ok ? SAGA_REPLY_OK : SAGA_REPLY_FAILED;
    rep.output = output;
    if (!ok) {
        rep.error_code = "no";
        rep.error_message = "refused";
    }
    ev.reply = &rep;
    saga_actions_clear(&r->acts);
    assert_int_equal(saga_machine_apply(r->s, &ev, &r->acts, NULL), SAGA_APPLIED);
    json_decref(output);
    for (int k = 0; k < r->acts.n; k++)
        if (r->acts.items[k].kind == SAGA_ACT_SEND)
            sent[n++] = (char)('0' + r->acts.items[k].step);
    sent[n] = '\0';
    return sent;
}

static void test_small_loan_skips_review_and_group(void **state)
{
    char sent[16];
    run *r = start(500);
    (void)state;
    /* check (score 700): review's amount is too small, the group's two
     * conditions are false: straight to pay. */
    assert_string_equal(
        answer(r, 0, SAGA_PHASE_INVOKE, 1, json_pack("{s:i}", "score", 700), sent), "4");
    assert_int_equal(r->s->steps[1].status, SAGA_STEP_NOT_RUN);
    assert_int_equal(r->s->steps[2].status, SAGA_STEP_NOT_RUN);
    assert_int_equal(r->s->steps[3].status, SAGA_STEP_NOT_RUN);
    assert_string_equal(saga_step_status_name(SAGA_STEP_NOT_RUN), "not_run");
    /* pay fails: only check is compensated (nothing was run to undo in
     * between). */
    assert_string_equal(answer(r, 4, SAGA_PHASE_INVOKE, 0, NULL, sent), "0");
    assert_int_equal(r->s->status, SAGA_ST_COMPENSATING);
    for (int k = 0; k < r->acts.n; k++)
        if (r->acts.items[k].kind == SAGA_ACT_HISTORY)
            assert_int_not_equal(r->acts.items[k].what,
                                 SAGA_HIST_COMPENSATION_NOT_NEEDED);
    answer(r, 0, SAGA_PHASE_COMPENSATE, 1, NULL, sent);
    assert_int_equal(r->s->status, SAGA_ST_COMPENSATED);
    assert_int_equal(r->s->steps[1].status, SAGA_STEP_NOT_RUN);
    finish(r);
}

static void test_big_loan_runs_review_and_half_the_group(void **state)
{
    char sent[16];
    run *r = start(5000);
    (void)state;
    assert_string_equal(
        answer(r, 0, SAGA_PHASE_INVOKE, 1, json_pack("{s:i}", "score", 50), sent), "1");
    /* review ran: the group's notify runs, and audit (score 50 < 100). */
    assert_string_equal(
        answer(r, 1, SAGA_PHASE_INVOKE, 1, json_pack("{s:b}", "ok", 1), sent), "23");
    assert_string_equal(answer(r, 2, SAGA_PHASE_INVOKE, 1, json_object(), sent), "");
    assert_string_equal(answer(r, 3, SAGA_PHASE_INVOKE, 1, json_object(), sent), "4");
    assert_string_equal(answer(r, 4, SAGA_PHASE_INVOKE, 1, json_object(), sent), "");
    assert_int_equal(r->s->status, SAGA_ST_COMPLETED);
    finish(r);
}

static void test_group_member_not_run_alone(void **state)
{
    char sent[16];
    run *r = start(500);
    (void)state;
    /* score 50: audit runs, notify (no review) does not; the stage ends
     * when audit answers. */
    assert_string_equal(
        answer(r, 0, SAGA_PHASE_INVOKE, 1, json_pack("{s:i}", "score", 50), sent), "2");
    assert_int_equal(r->s->steps[3].status, SAGA_STEP_NOT_RUN);
    assert_string_equal(answer(r, 2, SAGA_PHASE_INVOKE, 1, json_object(), sent), "4");
    finish(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors_say_where),
        cmocka_unit_test(test_evaluation),
        cmocka_unit_test(test_small_loan_skips_review_and_group),
        cmocka_unit_test(test_big_loan_runs_review_and_half_the_group),
        cmocka_unit_test(test_group_member_not_run_alone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
