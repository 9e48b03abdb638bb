/* Child sagas: a child step starts its child by a derived id (the same
 * for a retry) and ends with it; every way a child ends; undoing the step
 * asks the child to undo, and what the child then does; a child tells its
 * parent its end with its result; an exhaustive table over the statuses of
 * the saga and the child step and every event; and the checks that need
 * the other definitions. Pure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "saga_child.h"
#include "saga_definition.h"
#include "saga_machine.h"

#define T0     1700000000000LL
#define ID     "6f1c2f7e-8a1b-4c3d-9e2f-0123456789ab"
#define PARENT "0c0ffee0-1111-4222-8333-444455556666"

static const char *const cart =
    "{\"name\":\"cart\",\"steps\":["
    "{\"name\":\"reserve\",\"service\":\"inventory\",\"action\":\"reserve\","
    " \"compensation\":\"release\"},"
    "{\"name\":\"ship\",\"child\":\"shipping\",\"input\":{\"order\":\"${input.order}\"}},"
    "{\"name\":\"approve\",\"service\":\"orders\",\"action\":\"approve\","
    " \"input\":{\"shipment\":\"${steps.ship.output.saga_id}\"}}]}";

static const char *const shipping =
    "{\"name\":\"shipping\",\"steps\":["
    "{\"name\":\"book\",\"service\":\"shipping\",\"action\":\"book\","
    " \"compensation\":\"cancel\"},"
    "{\"name\":\"pickup\",\"service\":\"shipping\",\"action\":\"pickup\","
    " \"compensation\":\"cancel_pickup\"}]}";

typedef struct run {
    saga_definition *def;
    saga_state *s;
    saga_actions acts;
    const char *reason;
} run;

static run *prepare(const char *json, const char *id)
{
    run *r = calloc(1, sizeof *r);
    saga_def_problems probs = {0};
    json_t *input = json_pack("{s:s}", "order", "o-1");
    if (saga_definition_parse(json, strlen(json), &r->def, &probs) != SAGA_OK)
        fail_msg("%s: %s", probs.items[0].where, probs.items[0].message);
    r->def->version = 1;
    r->s = saga_state_new(r->def, id, input);
    json_decref(input);
    return r;
}

static int apply(run *r, const saga_event *ev)
{
    saga_actions_clear(&r->acts);
    return saga_machine_apply(r->s, ev, &r->acts, &r->reason);
}

static void finish(run *r)
{
    saga_actions_clear(&r->acts);
    saga_state_free(r->s);
    saga_definition_free(r->def);
    free(r);
}

static int reply(run *r, int i, saga_phase phase, saga_reply_status status, int64_t now)
{
    char cid[160];
    saga_reply rep = {0};
    saga_event ev = {.kind = SAGA_EV_REPLY, .now = now, .random = 0.5, .reply = &rep};
    int rc;
    saga_command_id_format(cid, sizeof cid, r->s->id, i, phase);
    memcpy(rep.saga_id, r->s->id, sizeof rep.saga_id);
    rep.v = SAGA_PROTOCOL_VERSION;
    rep.step = i;
    rep.phase = phase;
    rep.command_id = cid;
    rep.attempt = r->s->steps[i].attempts;
    rep.status = status;
    rep.output = status == SAGA_REPLY_OK ? json_object() : NULL;
    rep.error_code = status == SAGA_REPLY_OK ? NULL : "no";
    rep.error_message = status == SAGA_REPLY_OK ? NULL : "refused";
    rc = apply(r, &ev);
    json_decref(rep.output);
    return rc;
}

static int child_ended(run *r, int step, saga_child_end how, json_t *result, int64_t now)
{
    saga_event ev = {.kind = SAGA_EV_CHILD_ENDED,
                     .now = now,
                     .random = 0.5,
                     .step = step,
                     .child_end = (int)how,
                     .output = result};
    int rc = apply(r, &ev);
    json_decref(result);
    return rc;
}

static const saga_action *find(const run *r, saga_action_kind kind)
{
    for (int i = 0; i < r->acts.n; i++)
        if (r->acts.items[i].kind == kind)
            return &r->acts.items[i];
    return NULL;
}

static const saga_action *history(const run *r, saga_history_kind what)
{
    for (int i = 0; i < r->acts.n; i++)
        if (r->acts.items[i].kind == SAGA_ACT_HISTORY && r->acts.items[i].what == what)
            return &r->acts.items[i];
    return NULL;
}

/* The cart at its ship step, waiting for its child. */
static run *at_ship(void)
{
    run *r = prepare(cart, ID);
    saga_event ev = {.kind = SAGA_EV_START, .now = T0, .random = 0.5};
    assert_int_equal(apply(r, &ev), SAGA_APPLIED);
    assert_int_equal(reply(r, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, T0 + 1), SAGA_APPLIED);
    return r;
}

static void test_child_ids(void **state)
{
    char a[SAGA_ID_LEN + 1], b[SAGA_ID_LEN + 1], c[SAGA_ID_LEN + 1];
    (void)state;
    saga_child_id(ID, 1, a);
    saga_child_id(ID, 1, b);
    saga_child_id(ID, 2, c);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_int_equal(strlen(a), SAGA_ID_LEN);
    assert_int_equal(a[14], '5'); /* version 5 */
    assert_true(strchr("89ab", a[19]) != NULL);
}

static void test_start_and_complete(void **state)
{
    run *r = at_ship();
    const saga_action *a = find(r, SAGA_ACT_START_CHILD), *h;
    char child[SAGA_ID_LEN + 1];
    json_t *result;
    (void)state;
    saga_child_id(ID, 1, child);
    assert_non_null(a);
    assert_int_equal(a->step, 1);
    assert_string_equal(json_string_value(json_object_get(a->payload, "order")), "o-1");
    assert_null(find(r, SAGA_ACT_SEND));
    h = history(r, SAGA_HIST_CHILD_STARTED);
    assert_non_null(h);
    assert_string_equal(json_string_value(json_object_get(h->detail, "child_id")), child);
    assert_string_equal(json_string_value(json_object_get(h->detail, "definition")),
                        "shipping");
    /* Waiting for a child costs no timer. */
    assert_int_equal(r->s->steps[1].status, SAGA_STEP_DISPATCHED);
    assert_int_equal(r->s->wake_at, 0);
    /* A reply for the step, a forged one, ends nothing. */
    assert_int_equal(reply(r, 1, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, T0 + 2), SAGA_IGNORED);
    /* An operator's retry starts the same child again (the store makes it
     * nothing). */
    {
        saga_event op = {.kind = SAGA_EV_OP_RETRY,
                         .now = T0 + 3,
                         .random = 0.5,
                         .actor = "ops",
                         .reason = "stuck"};
        assert_int_equal(apply(r, &op), SAGA_APPLIED);
        assert_non_null(find(r, SAGA_ACT_START_CHILD));
        assert_string_equal(json_string_value(json_object_get(
                                history(r, SAGA_HIST_CHILD_STARTED)->detail, "child_id")),
                            child);
    }
    result = json_pack("{s:s, s:{s:{s:s}}}", "saga_id", child, "steps", "book", "courier",
                       "acme");
    assert_int_equal(child_ended(r, 1, SAGA_CHILD_COMPLETED, result, T0 + 10),
                     SAGA_APPLIED);
    assert_int_equal(r->s->steps[1].status, SAGA_STEP_SUCCEEDED);
    assert_non_null(history(r, SAGA_HIST_CHILD_ENDED));
    /* The next step reads the child's result. */
    a = find(r, SAGA_ACT_SEND);
    assert_non_null(a);
    assert_string_equal(json_string_value(json_object_get(a->payload, "shipment")),
                        child);
    /* Told again: nothing. */
    assert_int_equal(child_ended(r, 1, SAGA_CHILD_COMPLETED, NULL, T0 + 11),
                     SAGA_IGNORED);
    finish(r);
}

static void test_child_that_does_not_complete_fails_the_step(void **state)
{
    const saga_child_end ends[] = {SAGA_CHILD_COMPENSATED, SAGA_CHILD_REJECTED,
                                   SAGA_CHILD_RESOLVED};
    const char *codes[] = {"child_compensated", "child_rejected", "child_resolved"};
    (void)state;
    for (int k = 0; k < 3; k++) {
        run *r = at_ship();
        json_t *res = json_pack("{s:s}", "error", "no such definition");
        assert_int_equal(child_ended(r, 1, ends[k], res, T0 + 10), SAGA_APPLIED);
        assert_int_equal(r->s->steps[1].status, SAGA_STEP_FAILED);
        assert_string_equal(
            json_string_value(json_object_get(r->s->steps[1].error, "code")), codes[k]);
        /* Nothing of the child step to undo: the step before is. */
        assert_int_equal(r->s->status, SAGA_ST_COMPENSATING);
        assert_null(find(r, SAGA_ACT_COMPENSATE_CHILD));
        assert_int_equal(find(r, SAGA_ACT_SEND)->step, 0);
        finish(r);
    }
    /* What makes no sense now changes nothing. */
    {
        run *r = at_ship();
        assert_int_equal(child_ended(r, 1, SAGA_CHILD_UNCOMPENSABLE, NULL, T0 + 10),
                         SAGA_IGNORED);
        assert_int_equal(child_ended(r, 0, SAGA_CHILD_COMPLETED, NULL, T0 + 10),
                         SAGA_REJECTED);
        assert_int_equal(child_ended(r, 7, SAGA_CHILD_COMPLETED, NULL, T0 + 10),
                         SAGA_REJECTED);
        assert_int_equal(child_ended(r, 1, (saga_child_end)99, NULL, T0 + 10),
                         SAGA_REJECTED);
        finish(r);
    }
}

static void test_undoing_the_step_undoes_the_child(void **state)
{
    run *r = at_ship();
    saga_event op = {.kind = SAGA_EV_OP_RETRY,
                     .now = T0 + 40,
                     .random = 0.5,
                     .actor = "ops",
                     .reason = "x"};
    (void)state;
    assert_int_equal(child_ended(r, 1, SAGA_CHILD_COMPLETED,
                                 json_pack("{s:s}", "saga_id", "c"), T0 + 10),
                     SAGA_APPLIED);
    /* approve fails: ship is undone by its child */
    assert_int_equal(reply(r, 2, SAGA_PHASE_INVOKE, SAGA_REPLY_FAILED, T0 + 20),
                     SAGA_APPLIED);
    assert_int_equal(r->s->status, SAGA_ST_COMPENSATING);
    assert_int_equal(r->s->cursor, 1);
    assert_int_equal(r->s->steps[1].status, SAGA_STEP_COMPENSATING);
    assert_non_null(find(r, SAGA_ACT_COMPENSATE_CHILD));
    assert_non_null(history(r, SAGA_HIST_CHILD_COMPENSATION_ASKED));
    assert_int_equal(r->s->wake_at, 0);
    /* the child cannot be undone: stuck, for an operator */
    assert_int_equal(child_ended(r, 1, SAGA_CHILD_UNCOMPENSABLE,
                                 json_pack("{s:s}", "error", "it passed its pivot"),
                                 T0 + 30),
                     SAGA_APPLIED);
    assert_int_equal(r->s->status, SAGA_ST_FAILED);
    assert_int_equal(r->s->steps[1].status, SAGA_STEP_COMPENSATION_FAILED);
    /* retried: asked again; this time undone, and on to the step before */
    assert_int_equal(apply(r, &op), SAGA_APPLIED);
    assert_non_null(find(r, SAGA_ACT_COMPENSATE_CHILD));
    assert_int_equal(child_ended(r, 1, SAGA_CHILD_COMPENSATED, NULL, T0 + 50),
                     SAGA_APPLIED);
    assert_int_equal(r->s->steps[1].status, SAGA_STEP_COMPENSATED);
    assert_int_equal(find(r, SAGA_ACT_SEND)->step, 0);
    assert_int_equal(reply(r, 0, SAGA_PHASE_COMPENSATE, SAGA_REPLY_OK, T0 + 60),
                     SAGA_APPLIED);
    assert_int_equal(r->s->status, SAGA_ST_COMPENSATED);
    finish(r);

    /* aborted while the child runs: the child step may have acted (its child
     * runs), so it is undone too */
    r = at_ship();
    op.kind = SAGA_EV_OP_COMPENSATE;
    assert_int_equal(apply(r, &op), SAGA_APPLIED);
    assert_int_equal(r->s->steps[1].status, SAGA_STEP_COMPENSATING);
    assert_non_null(find(r, SAGA_ACT_COMPENSATE_CHILD));
    /* its completion, told late, is not its undoing */
    assert_int_equal(child_ended(r, 1, SAGA_CHILD_COMPLETED, NULL, T0 + 50),
                     SAGA_IGNORED);
    assert_int_equal(child_ended(r, 1, SAGA_CHILD_RESOLVED, NULL, T0 + 51), SAGA_APPLIED);
    assert_int_equal(r->s->steps[1].status, SAGA_STEP_COMPENSATED);
    finish(r);
}

/* ---- the child's side ---- */

static run *child_run(const char *json)
{
    run *r = prepare(json, ID);
    saga_event ev = {.kind = SAGA_EV_START, .now = T0, .random = 0.5};
    snprintf(r->s->parent_id, sizeof r->s->parent_id, "%s", PARENT);
    r->s->parent_step = 1;
    assert_int_equal(apply(r, &ev), SAGA_APPLIED);
    assert_string_equal(json_string_value(json_object_get(
                            history(r, SAGA_HIST_SAGA_STARTED)->detail, "parent_id")),
                        PARENT);
    return r;
}

static void test_child_tells_its_parent(void **state)
{
    run *r = child_run(shipping);
    const saga_action *n;
    saga_event pc = {.kind = SAGA_EV_PARENT_COMPENSATE, .now = T0 + 20, .random = 0.5};
    (void)state;
    assert_int_equal(reply(r, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, T0 + 1), SAGA_APPLIED);
    assert_null(find(r, SAGA_ACT_NOTIFY_PARENT));
    assert_int_equal(reply(r, 1, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, T0 + 2), SAGA_APPLIED);
    assert_int_equal(r->s->status, SAGA_ST_COMPLETED);
    n = find(r, SAGA_ACT_NOTIFY_PARENT);
    assert_non_null(n);
    assert_string_equal(json_string_value(json_object_get(n->payload, "status")),
                        "completed");
    assert_non_null(json_object_get(
        json_object_get(json_object_get(n->payload, "result"), "steps"), "pickup"));
    /* its parent undoes it: reopened, undone last step first */
    assert_int_equal(apply(r, &pc), SAGA_APPLIED);
    assert_int_equal(r->s->status, SAGA_ST_COMPENSATING);
    assert_non_null(history(r, SAGA_HIST_PARENT_COMPENSATION));
    assert_int_equal(find(r, SAGA_ACT_SEND)->step, 1);
    assert_int_equal(find(r, SAGA_ACT_SEND)->phase, SAGA_PHASE_COMPENSATE);
    assert_int_equal(apply(r, &pc), SAGA_IGNORED); /* asked twice */
    assert_int_equal(reply(r, 1, SAGA_PHASE_COMPENSATE, SAGA_REPLY_OK, T0 + 21),
                     SAGA_APPLIED);
    assert_int_equal(reply(r, 0, SAGA_PHASE_COMPENSATE, SAGA_REPLY_OK, T0 + 22),
                     SAGA_APPLIED);
    assert_int_equal(r->s->status, SAGA_ST_COMPENSATED);
    n = find(r, SAGA_ACT_NOTIFY_PARENT);
    assert_string_equal(json_string_value(json_object_get(n->payload, "status")),
                        "compensated");
    assert_int_equal(apply(r, &pc), SAGA_IGNORED);
    finish(r);

    /* a child that fails tells why */
    r = child_run(shipping);
    assert_int_equal(reply(r, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, T0 + 1), SAGA_APPLIED);
    assert_int_equal(reply(r, 1, SAGA_PHASE_INVOKE, SAGA_REPLY_FAILED, T0 + 2),
                     SAGA_APPLIED);
    assert_int_equal(reply(r, 0, SAGA_PHASE_COMPENSATE, SAGA_REPLY_OK, T0 + 3),
                     SAGA_APPLIED);
    n = find(r, SAGA_ACT_NOTIFY_PARENT);
    assert_non_null(n);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(n->payload, "result"), "error")),
                        "refused");
    finish(r);

    /* a running child is aborted; one past its pivot must end first; a
     * completed one past its pivot cannot be undone; a stuck one waits */
    {
        static const char *const pivoted =
            "{\"name\":\"shipping\",\"steps\":["
            "{\"name\":\"book\",\"service\":\"s\",\"action\":\"book\","
            " \"compensation\":\"cancel\"},"
            "{\"name\":\"hand_over\",\"service\":\"s\",\"action\":\"go\",\"pivot\":true},"
            "{\"name\":\"notify\",\"service\":\"s\",\"action\":\"tell\"}]}";
        r = child_run(shipping);
        assert_int_equal(apply(r, &pc), SAGA_APPLIED);
        assert_int_equal(r->s->status, SAGA_ST_COMPENSATING);
        finish(r);
        r = child_run(pivoted);
        assert_int_equal(reply(r, 0, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, T0 + 1),
                         SAGA_APPLIED);
        assert_int_equal(apply(r, &pc), SAGA_IGNORED);
        assert_non_null(strstr(r->reason, "point of no return"));
        assert_int_equal(reply(r, 1, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, T0 + 2),
                         SAGA_APPLIED);
        assert_int_equal(reply(r, 2, SAGA_PHASE_INVOKE, SAGA_REPLY_OK, T0 + 3),
                         SAGA_APPLIED);
        assert_int_equal(r->s->status, SAGA_ST_COMPLETED);
        assert_int_equal(apply(r, &pc), SAGA_REJECTED);
        assert_non_null(strstr(r->reason, "pivot"));
        finish(r);
        r = child_run(shipping);
        r->s->status = SAGA_ST_FAILED;
        assert_int_equal(apply(r, &pc), SAGA_IGNORED);
        finish(r);
        r = prepare(shipping, ID); /* no parent */
        r->s->status = SAGA_ST_COMPLETED;
        assert_int_equal(apply(r, &pc), SAGA_REJECTED);
        finish(r);
    }
    /* resolved by an operator: the parent is told */
    r = child_run(shipping);
    r->s->status = SAGA_ST_FAILED;
    {
        saga_event op = {.kind = SAGA_EV_OP_RESOLVE,
                         .now = T0 + 5,
                         .random = 0.5,
                         .actor = "ops",
                         .reason = "done by hand"};
        assert_int_equal(apply(r, &op), SAGA_APPLIED);
        assert_string_equal(json_string_value(json_object_get(
                                find(r, SAGA_ACT_NOTIFY_PARENT)->payload, "status")),
                            "resolved");
    }
    finish(r);
}

/* ---- the exhaustive table ---- */

static void test_every_status_and_child_event(void **state)
{
    int applied = 0, ignored = 0, rejected = 0;
    saga_definition *def;
    saga_def_problems probs = {0};
    (void)state;
    assert_int_equal(saga_definition_parse(cart, strlen(cart), &def, &probs), SAGA_OK);
    def->version = 1;
    for (int ss = 1; ss < SAGA_STATUS_COUNT; ss++)
        for (int ps = 0; ps < SAGA_STEP_STATUS_COUNT; ps++)
            for (int child = 0; child < 2; child++)
                for (int e = 0; e < SAGA_CHILD_END_COUNT + 6; e++) {
                    run r = {def, NULL, {0}, NULL};
                    json_t *input = json_pack("{s:s}", "order", "o");
                    saga_status st_before;
                    saga_step_status step_before;
                    int rc;
                    r.s = saga_state_new(def, ID, input);
                    json_decref(input);
                    r.s->status = (saga_status)ss;
                    r.s->cursor = 1;
                    r.s->steps[0].status = SAGA_STEP_SUCCEEDED;
                    r.s->steps[0].output = json_object();
                    r.s->steps[1].status = (saga_step_status)ps;
                    r.s->steps[1].attempts = 1;
                    r.s->steps[1].awaiting = 1;
                    if (child) {
                        snprintf(r.s->parent_id, sizeof r.s->parent_id, "%s", PARENT);
                        r.s->parent_step = 0;
                    }
                    st_before = r.s->status;
                    step_before = r.s->steps[1].status;
                    if (e < SAGA_CHILD_END_COUNT) {
                        saga_event ev = {.kind = SAGA_EV_CHILD_ENDED,
                                         .now = T0 + 10,
                                         .random = 0.5,
                                         .step = 1,
                                         .child_end = e};
                        rc = apply(&r, &ev);
                    } else if (e == SAGA_CHILD_END_COUNT) {
                        saga_event ev = {.kind = SAGA_EV_PARENT_COMPENSATE,
                                         .now = T0 + 10,
                                         .random = 0.5};
                        rc = apply(&r, &ev);
                    } else if (e == SAGA_CHILD_END_COUNT + 1) {
                        saga_event ev = {
                            .kind = SAGA_EV_WAKE, .now = T0 + 10, .random = 0.5};
                        rc = apply(&r, &ev);
                    } else {
                        saga_event ev = {
                            .kind = (saga_event_kind)(SAGA_EV_OP_RETRY +
                                                      (e - SAGA_CHILD_END_COUNT - 2)),
                            .now = T0 + 10,
                            .random = 0.5,
                            .actor = "table",
                            .reason = "table",
                            .step = 1};
                        rc = apply(&r, &ev);
                    }
                    if (rc != SAGA_APPLIED && rc != SAGA_IGNORED && rc != SAGA_REJECTED)
                        fail_msg("%d/%d/%d/%d: result %d", ss, ps, child, e, rc);
                    if (rc != SAGA_APPLIED) {
                        if (r.reason == NULL || r.s->status != st_before ||
                            r.s->steps[1].status != step_before || r.acts.n != 0)
                            fail_msg("%s/%s/%d/%d: not applied but changed state or "
                                     "gave no reason",
                                     saga_status_name(ss), saga_step_status_name(ps),
                                     child, e);
                        rc == SAGA_IGNORED ? ignored++ : rejected++;
                    } else {
                        int ended = saga_status_is_final(r.s->status);
                        applied++;
                        if (ended && r.s->wake_at != 0)
                            fail_msg("%d/%d/%d/%d: ended with a timer", ss, ps, child, e);
                        /* A child that ends tells its parent, once; no other
                         * saga tells anyone. */
                        if ((child && ended && st_before != r.s->status) !=
                            (find(&r, SAGA_ACT_NOTIFY_PARENT) != NULL))
                            fail_msg("%s/%s/%d/%d: %s its parent", saga_status_name(ss),
                                     saga_step_status_name(ps), child, e,
                                     find(&r, SAGA_ACT_NOTIFY_PARENT) ? "told"
                                                                      : "did not tell");
                    }
                    /* Only a child takes its parent's undo. */
                    if (!child && e == SAGA_CHILD_END_COUNT)
                        assert_int_equal(rc, SAGA_REJECTED);
                    saga_actions_clear(&r.acts);
                    saga_state_free(r.s);
                }
    saga_definition_free(def);
    print_message("child table: %d combinations: %d applied, %d ignored, %d rejected\n",
                  applied + ignored + rejected, applied, ignored, rejected);
    /* The classification as reviewed: a change moves these figures. */
    assert_int_equal(applied, 63);
    assert_int_equal(ignored, 528);
    assert_int_equal(rejected, 729);
}

/* ---- the checks that need the other definitions ---- */

typedef struct defs {
    saga_definition *d[4];
    int n;
} defs;

static const saga_definition *lookup(const char *name, void *arg)
{
    defs *v = arg;
    for (int i = 0; i < v->n; i++)
        if (strcmp(v->d[i]->name, name) == 0)
            return v->d[i];
    return NULL;
}

static void load(defs *v, const char *json)
{
    saga_def_problems probs = {0};
    if (saga_definition_parse(json, strlen(json), &v->d[v->n], &probs) != SAGA_OK)
        fail_msg("%s: %s", probs.items[0].where, probs.items[0].message);
    v->n++;
}

static void expect(defs *v, int which, const char *where, const char *fragment)
{
    saga_def_problems probs = {0};
    int rc = saga_definition_check_children(v->d[which], lookup, v, &probs);
    if (fragment == NULL) {
        if (rc != SAGA_OK)
            fail_msg("refused: %s: %s", probs.items[0].where, probs.items[0].message);
        return;
    }
    assert_int_equal(rc, SAGA_EDEF);
    assert_string_equal(probs.items[0].where, where);
    if (strstr(probs.items[0].message, fragment) == NULL)
        fail_msg("\"%s\" lacks \"%s\"", probs.items[0].message, fragment);
}

static void test_children_checks(void **state)
{
    defs v = {{0}, 0};
    (void)state;
    load(&v, cart);
    expect(&v, 0, "steps[1].child", "no definition \"shipping\"");
    load(&v, shipping);
    expect(&v, 0, "steps[1].child", NULL);
    load(&v, "{\"name\":\"a\",\"steps\":[{\"name\":\"x\",\"child\":\"b\"}]}");
    load(&v, "{\"name\":\"b\",\"steps\":[{\"name\":\"y\",\"child\":\"a\"}]}");
    expect(&v, 2, "steps[0].child", "\"b\" leads back to \"a\" (a -> b -> a)");
    for (int i = 0; i < v.n; i++)
        saga_definition_free(v.d[i]);
    v.n = 0;
    load(&v, "{\"name\":\"self\",\"steps\":[{\"name\":\"x\",\"child\":\"self\"}]}");
    expect(&v, 0, "steps[0].child", "leads back to \"self\" (self -> self)");
    load(&v, "{\"name\":\"p\",\"steps\":[{\"name\":\"s\",\"service\":\"a\","
             "\"action\":\"b\",\"compensation\":\"c\"},{\"name\":\"x\",\"child\":\"q\"},"
             "{\"name\":\"z\",\"service\":\"a\",\"action\":\"z\"}]}");
    load(&v, "{\"name\":\"q\",\"steps\":[{\"name\":\"go\",\"service\":\"a\","
             "\"action\":\"b\",\"pivot\":true}]}");
    expect(&v, 1, "steps[1].child", "\"q\" has a pivot (its step \"go\")");
    for (int i = 0; i < v.n; i++)
        saga_definition_free(v.d[i]);
}

static void test_child_step_keys(void **state)
{
    static const char *const bad =
        "{\"name\":\"x\",\"steps\":[{\"name\":\"s\",\"child\":\"y\",\"service\":\"a\","
        "\"compensation\":\"c\",\"timeout\":\"1s\",\"for_each\":\"${input.l}\"}]}";
    saga_definition *def = NULL;
    saga_def_problems probs = {0};
    int seen = 0;
    (void)state;
    assert_int_equal(saga_definition_parse(bad, strlen(bad), &def, &probs), SAGA_EDEF);
    for (int i = 0; i < probs.count; i++)
        seen += strstr(probs.items[i].message,
                       "a child step runs a saga, not a service") != NULL;
    assert_int_equal(seen, 4);
    assert_string_equal(probs.items[0].where, "steps[0].service");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_child_ids),
        cmocka_unit_test(test_start_and_complete),
        cmocka_unit_test(test_child_that_does_not_complete_fails_the_step),
        cmocka_unit_test(test_undoing_the_step_undoes_the_child),
        cmocka_unit_test(test_child_tells_its_parent),
        cmocka_unit_test(test_every_status_and_child_event),
        cmocka_unit_test(test_children_checks),
        cmocka_unit_test(test_child_step_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
