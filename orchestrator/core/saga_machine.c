/* The pure saga state machine. See saga_machine.h and docs/GUARANTEES.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga_machine.h"
#include "saga_template.h"

static const char *const status_names[] = {
    "new", "running", "compensating", "completed", "compensated", "failed", "resolved"};
static const char *const step_status_names[] = {
    "pending",      "dispatched",  "succeeded",           "failed", "unknown",
    "compensating", "compensated", "compensation_failed", "skipped"};

const char *saga_status_name(saga_status s)
{
    return (unsigned)s < SAGA_STATUS_COUNT ? status_names[s] : "?";
}

int saga_status_parse(const char *text, saga_status *out)
{
    for (int i = 0; i < SAGA_STATUS_COUNT; i++)
        if (text != NULL && strcmp(text, status_names[i]) == 0) {
            *out = (saga_status)i;
            return 0;
        }
    return -1;
}

const char *saga_step_status_name(saga_step_status s)
{
    return (unsigned)s < SAGA_STEP_STATUS_COUNT ? step_status_names[s] : "?";
}

int saga_step_status_parse(const char *text, saga_step_status *out)
{
    for (int i = 0; i < SAGA_STEP_STATUS_COUNT; i++)
        if (text != NULL && strcmp(text, step_status_names[i]) == 0) {
            *out = (saga_step_status)i;
            return 0;
        }
    return -1;
}

int saga_status_is_final(saga_status s)
{
    return s == SAGA_ST_COMPLETED || s == SAGA_ST_COMPENSATED || s == SAGA_ST_RESOLVED;
}

saga_state *saga_state_new(const saga_definition *def, const char *id, json_t *input)
{
    saga_state *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->steps = calloc((size_t)def->nsteps, sizeof *s->steps);
    if (s->steps == NULL) {
        free(s);
        return NULL;
    }
    s->def = def;
    s->nsteps = def->nsteps;
    strncpy(s->id, id, SAGA_ID_LEN);
    s->input = input != NULL ? json_incref(input) : json_object();
    return s;
}

void saga_state_free(saga_state *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < s->nsteps; i++) {
        json_decref(s->steps[i].output);
        json_decref(s->steps[i].error);
    }
    free(s->steps);
    json_decref(s->input);
    free(s);
}

void saga_actions_clear(saga_actions *a)
{
    for (int i = 0; i < a->n; i++) {
        json_decref(a->items[i].payload);
        json_decref(a->items[i].detail);
    }
    free(a->items);
    memset(a, 0, sizeof *a);
}

int64_t saga_backoff_ms(const saga_retry_policy *p, int attempt, double random)
{
    double d = (double)p->backoff_ms;
    for (int i = 1; i < attempt && d < (double)p->max_backoff_ms; i++)
        d *= p->multiplier;
    if (d > (double)p->max_backoff_ms)
        d = (double)p->max_backoff_ms;
    /* Jitter spreads retries of many sagas so they do not arrive together. */
    d *= 1.0 + p->jitter * (2.0 * random - 1.0);
    return d < 1.0 ? 1 : (int64_t)d;
}

json_t *saga_state_context(const saga_state *s)
{
    json_t *steps = json_object();
    for (int i = 0; i < s->nsteps; i++)
        if (s->steps[i].output != NULL && s->def->steps[i].name != NULL)
            json_object_set_new(steps, s->def->steps[i].name,
                                json_pack("{s:O}", "output", s->steps[i].output));
    return json_pack("{s:O, s:o, s:{s:s, s:s, s:i}}", "input", s->input, "steps", steps,
                     "saga", "id", s->id, "name", s->def->name, "version",
                     s->def->version);
}

/* ---- the machine ---- */

typedef struct ctx {
    saga_state *s;
    const saga_event *ev;
    saga_actions *out;
    int oom;
} ctx;

static saga_action *push(ctx *c, saga_action_kind kind)
{
    saga_actions *a = c->out;
    if (a->n == a->cap) {
        int cap = a->cap ? a->cap * 2 : 8;
        saga_action *items = realloc(a->items, sizeof *items * (size_t)cap);
        if (items == NULL) {
            c->oom = 1;
            return NULL;
        }
        a->items = items;
        a->cap = cap;
    }
    memset(&a->items[a->n], 0, sizeof a->items[0]);
    a->items[a->n].kind = kind;
    return &a->items[a->n++];
}

/* Append a history event; detail is stolen. */
static void history(ctx *c, const char *what, int step, int attempt, json_t *detail)
{
    saga_action *a = push(c, SAGA_ACT_HISTORY);
    if (a == NULL) {
        json_decref(detail);
        return;
    }
    a->what = what;
    a->step = step;
    a->attempt = attempt;
    a->phase =
        c->s->status == SAGA_ST_COMPENSATING ? SAGA_PHASE_COMPENSATE : SAGA_PHASE_INVOKE;
    a->detail = detail;
}

static json_t *error_obj(const char *code, const char *message)
{
    return json_pack("{s:s, s:s}", "code", code ? code : "error", "message",
                     message ? message : "");
}

static void set_error(saga_step_state *st, json_t *err)
{
    json_decref(st->error);
    st->error = err;
}

static void finish(ctx *c, saga_status status, const char *what)
{
    c->s->status = status;
    history(c, what, -1, 0, NULL);
}

/* Has the saga passed the point where a deadline may still undo it? Past a
 * pivot, or while an irreversible step may have taken effect. */
static int past_return(const saga_state *s)
{
    const saga_step_def *first = &s->def->steps[s->cursor];
    for (int i = first->stage_first; i <= first->stage_last; i++) {
        const saga_step_def *sd = &s->def->steps[i];
        if (sd->forward_only || (sd->irreversible && s->steps[i].attempts > 0))
            return 1;
    }
    return 0;
}

/* The stage (steps that run together) the cursor is in: [*first, *last]. */
static void stage_of(const saga_state *s, int *first, int *last)
{
    *first = s->def->steps[s->cursor].stage_first;
    *last = s->def->steps[s->cursor].stage_last;
}

/* Recompute the saga's earliest timer. */
static void update_wake(saga_state *s)
{
    int64_t w = 0;
    if (s->status == SAGA_ST_RUNNING || s->status == SAGA_ST_COMPENSATING) {
        if (s->cursor >= 0 && s->cursor < s->nsteps) {
            int first = s->cursor, last = s->cursor;
            if (s->status == SAGA_ST_RUNNING)
                stage_of(s, &first, &last);
            for (int i = first; i <= last; i++)
                if (s->steps[i].due_at > 0 && (w == 0 || s->steps[i].due_at < w))
                    w = s->steps[i].due_at;
        }
        if (s->status == SAGA_ST_RUNNING && s->deadline_at > 0 &&
            (w == 0 || s->deadline_at < w) && !past_return(s))
            w = s->deadline_at;
    }
    s->wake_at = w;
}

static void next_compensation(ctx *c, int from);
static void fail_stage(ctx *c, int step, const char *why);

/* Send the command for step i in its current phase, as attempt attempts+1. */
static void dispatch(ctx *c, int i)
{
    saga_state *s = c->s;
    saga_step_state *st = &s->steps[i];
    const saga_step_def *sd = &s->def->steps[i];
    int compensate = st->status == SAGA_STEP_COMPENSATING;
    saga_error err = {0};
    json_t *ctxj = saga_state_context(s), *payload;
    saga_action *a;

    payload = ctxj ? saga_template_resolve(sd->input, ctxj, &err) : NULL;
    json_decref(ctxj);
    if (payload == NULL && !compensate) {
        /* A reference that resolves to nothing is a definite failure of
         * this step: nothing was sent, so there is nothing to undo here. */
        st->status = SAGA_STEP_FAILED;
        st->finished_at = c->ev->now;
        st->due_at = 0;
        st->awaiting = 0;
        set_error(st, error_obj("input", err.message));
        st->dirty = 1;
        history(c, "step_failed", i, st->attempts, error_obj("input", err.message));
        if (sd->forward_only && !sd->pivot) {
            /* Past the point of no return nothing may be undone: as for a
             * definite failure there, an operator decides. */
            s->status = SAGA_ST_FAILED;
            history(c, "saga_failed", i, st->attempts,
                    json_pack("{s:s}", "reason",
                              "a step after the pivot cannot be run (its input does not "
                              "resolve); it cannot be compensated"));
            return;
        }
        fail_stage(c, i, "step_failed");
        return;
    }
    if (compensate) {
        /* A compensation sees the step's input and whatever it output. */
        json_t *p = json_pack("{s:o, s:O}", "input", payload ? payload : json_object(),
                              "output", st->output ? st->output : json_null());
        payload = p;
    }
    st->attempts++;
    st->awaiting = 1;
    st->due_at = c->ev->now + sd->timeout_ms;
    /* started_at keeps the first dispatch of the action; finished_at moves
     * to the end of the compensation. */
    if (st->attempts == 1 && !compensate)
        st->started_at = c->ev->now;
    st->dirty = 1;
    a = push(c, SAGA_ACT_SEND);
    if (a == NULL) {
        json_decref(payload);
        return;
    }
    a->step = i;
    a->phase = compensate ? SAGA_PHASE_COMPENSATE : SAGA_PHASE_INVOKE;
    a->attempt = st->attempts;
    a->deadline = st->due_at;
    a->payload = payload;
    history(c, compensate ? "compensation_dispatched" : "step_dispatched", i,
            st->attempts,
            json_pack("{s:s, s:s}", "service", sd->service, "action",
                      compensate ? sd->compensation : sd->action));
}

/* Begin step i going forward, or complete the saga past the last step. */
static void advance(ctx *c, int i)
{
    saga_state *s = c->s;
    if (i >= s->nsteps) {
        s->cursor = s->nsteps - 1;
        finish(c, SAGA_ST_COMPLETED, "saga_completed");
        return;
    }
    s->cursor = i;
    /* Every step of the stage goes out at once; they run in parallel. */
    for (int j = i; j <= s->def->steps[i].stage_last && s->status == SAGA_ST_RUNNING;
         j++) {
        s->steps[j].status = SAGA_STEP_DISPATCHED;
        s->steps[j].attempts = 0;
        dispatch(c, j);
    }
}

/* Step `step` of the running stage failed or its outcome is unknown: the
 * other steps of the stage that were sent may have acted (their outcome is
 * unknown now; late replies are ignored), and everything done is undone in
 * reverse order, from the end of the stage. */
static void fail_stage(ctx *c, int step, const char *why)
{
    saga_state *s = c->s;
    /* step -1: no step failed (a deadline, an operator): abort the stage. */
    const saga_step_def *sd = &s->def->steps[step >= 0 ? step : s->cursor];
    for (int j = sd->stage_first; j <= sd->stage_last; j++) {
        saga_step_state *st = &s->steps[j];
        if (j == step || st->status != SAGA_STEP_DISPATCHED)
            continue;
        st->status = st->attempts > 0 ? SAGA_STEP_UNKNOWN : SAGA_STEP_PENDING;
        st->awaiting = 0;
        st->due_at = 0;
        st->dirty = 1;
    }
    c->s->status = SAGA_ST_COMPENSATING;
    history(c, "compensation_started", step >= 0 ? step : s->cursor, 0,
            json_pack("{s:s}", "reason", why));
    next_compensation(c, sd->stage_last);
}

/* All steps of the cursor's stage are done: move on. */
static void stage_done_or_wait(ctx *c)
{
    saga_state *s = c->s;
    int first, last;
    stage_of(s, &first, &last);
    for (int j = first; j <= last; j++)
        if (s->steps[j].status != SAGA_STEP_SUCCEEDED &&
            s->steps[j].status != SAGA_STEP_SKIPPED)
            return;
    advance(c, last + 1);
}

static void next_compensation(ctx *c, int from)
{
    saga_state *s = c->s;
    for (int i = from; i >= 0; i--) {
        saga_step_state *st = &s->steps[i];
        const saga_step_def *sd = &s->def->steps[i];
        /* A step an operator skipped counts as done: its effect exists. */
        if (st->status != SAGA_STEP_SUCCEEDED && st->status != SAGA_STEP_UNKNOWN &&
            st->status != SAGA_STEP_SKIPPED)
            continue;
        if (sd->forward_only)
            continue; /* never happens before a pivot, kept for safety */
        if (sd->compensation == NULL) {
            history(c, "compensation_not_needed", i, 0, NULL);
            continue;
        }
        s->cursor = i;
        st->status = SAGA_STEP_COMPENSATING;
        st->attempts = 0;
        st->attempt_base = 0;
        /* The error, like the attempt count, is the current phase's: the
         * action's (a timeout, for an unknown outcome) stays in the history. */
        set_error(st, NULL);
        st->dirty = 1;
        dispatch(c, i);
        return;
    }
    s->cursor = from < 0 ? 0 : from;
    finish(c, SAGA_ST_COMPENSATED, "saga_compensated");
}

/* A transient failure of the current attempt (retry reply or timeout). */
static void transient(ctx *c, int i, json_t *err, int64_t retry_after, const char *what)
{
    saga_state *s = c->s;
    saga_step_state *st = &s->steps[i];
    const saga_step_def *sd = &s->def->steps[i];
    int compensate = st->status == SAGA_STEP_COMPENSATING;
    const saga_retry_policy *pol = compensate ? &sd->compensation_retry : &sd->retry;
    /* An action whose effect could not be undone is never given up on:
     * compensating the steps before it would leave that effect alone. */
    int unlimited = !compensate && (sd->forward_only || sd->irreversible);

    set_error(st, json_incref(err));
    st->dirty = 1;
    st->awaiting = 0;
    history(c, what, i, st->attempts, err);
    if (unlimited || st->attempts - st->attempt_base < pol->max_attempts) {
        int64_t delay = saga_backoff_ms(pol, st->attempts, c->ev->random);
        if (retry_after > delay)
            delay = retry_after;
        st->due_at = c->ev->now + delay;
        history(c, "retry_scheduled", i, st->attempts,
                json_pack("{s:I, s:I}", "delay_ms", (json_int_t)delay, "at",
                          (json_int_t)st->due_at));
        return;
    }
    st->due_at = 0;
    st->finished_at = c->ev->now;
    if (compensate) {
        st->status = SAGA_STEP_COMPENSATION_FAILED;
        s->status = SAGA_ST_FAILED;
        history(c, "saga_failed", i, st->attempts,
                json_pack("{s:s, s:i, s:O}", "reason", "compensation retries exhausted",
                          "attempts", st->attempts, "last_error", st->error));
        return;
    }
    st->status = SAGA_STEP_UNKNOWN;
    history(c, "step_outcome_unknown", i, st->attempts,
            json_pack("{s:i}", "attempts", st->attempts));
    fail_stage(c, i, "retries_exhausted");
}

static int on_start(ctx *c, const char **reason)
{
    saga_state *s = c->s;
    if (s->status != SAGA_ST_NEW) {
        *reason = "saga already started";
        return SAGA_REJECTED;
    }
    s->status = SAGA_ST_RUNNING;
    s->created_at = c->ev->now;
    if (s->def->deadline_ms > 0)
        s->deadline_at = c->ev->now + s->def->deadline_ms;
    history(
        c, "saga_started", -1, 0,
        json_pack("{s:s, s:i}", "definition", s->def->name, "version", s->def->version));
    advance(c, 0);
    return SAGA_APPLIED;
}

/* Going forward the cursor step is dispatched; compensating, it is being
 * compensated. Any other combination cannot come from this machine (a
 * hand-edited row, say): refuse to act on it rather than guess. */
static int cursor_consistent(const saga_state *s)
{
    saga_step_status st;
    if (s->cursor < 0 || s->cursor >= s->nsteps)
        return 0;
    st = s->steps[s->cursor].status;
    if (s->status == SAGA_ST_RUNNING) {
        int first, last, waiting = 0;
        stage_of(s, &first, &last);
        if (s->cursor != first)
            return 0;
        for (int j = first; j <= last; j++) {
            saga_step_status sj = s->steps[j].status;
            if (sj == SAGA_STEP_DISPATCHED)
                waiting = 1;
            else if (sj != SAGA_STEP_SUCCEEDED && sj != SAGA_STEP_SKIPPED)
                return 0;
        }
        return waiting;
    }
    return st == SAGA_STEP_COMPENSATING;
}

static int on_reply(ctx *c, const char **reason)
{
    saga_state *s = c->s;
    const saga_reply *r = c->ev->reply;
    saga_step_state *st;
    char expect[128];
    int compensate;

    if (r == NULL) {
        *reason = "reply event without a reply";
        return SAGA_REJECTED;
    }
    if (s->status != SAGA_ST_RUNNING && s->status != SAGA_ST_COMPENSATING) {
        *reason = "saga is not running";
        return SAGA_IGNORED;
    }
    if (r->step < 0 || r->step >= s->nsteps) {
        *reason = "reply names a step the saga does not have";
        return SAGA_REJECTED;
    }
    if (s->status == SAGA_ST_RUNNING ? (r->step < s->def->steps[s->cursor].stage_first ||
                                        r->step > s->def->steps[s->cursor].stage_last)
                                     : r->step != s->cursor) {
        *reason = "reply for a step that is not outstanding";
        return SAGA_IGNORED;
    }
    if (!cursor_consistent(s)) {
        *reason = "the saga's current step is in a state that awaits no reply";
        return SAGA_REJECTED;
    }
    st = &s->steps[r->step];
    compensate = s->status == SAGA_ST_COMPENSATING;
    if (!compensate && st->status != SAGA_STEP_DISPATCHED) {
        *reason = "reply for a step of the stage that is no longer outstanding";
        return SAGA_IGNORED;
    }
    if ((r->phase == SAGA_PHASE_COMPENSATE) != compensate) {
        *reason = "reply for the other phase of the step";
        return SAGA_IGNORED;
    }
    saga_command_id_format(expect, sizeof expect, s->id, r->step, r->phase);
    if (r->command_id == NULL || strcmp(r->command_id, expect) != 0) {
        *reason = "reply command_id does not match the outstanding command";
        return SAGA_IGNORED;
    }
    if (r->attempt > st->attempts) {
        *reason = "reply for an attempt that was never sent";
        return SAGA_REJECTED;
    }
    if (r->status == SAGA_REPLY_RETRY && (r->attempt != st->attempts || !st->awaiting)) {
        *reason = "retry reply for an attempt that is no longer outstanding";
        return SAGA_IGNORED;
    }

    switch (r->status) {
    case SAGA_REPLY_OK:
        st->awaiting = 0;
        st->due_at = 0;
        st->finished_at = c->ev->now;
        st->dirty = 1;
        if (compensate) {
            st->status = SAGA_STEP_COMPENSATED;
            set_error(st, NULL);
            history(c, "step_compensated", r->step, r->attempt,
                    r->output ? json_incref(r->output) : NULL);
            next_compensation(c, r->step - 1);
        } else {
            st->status = SAGA_STEP_SUCCEEDED;
            /* An earlier attempt's error is history now, not the step's. */
            set_error(st, NULL);
            json_decref(st->output);
            st->output = r->output ? json_incref(r->output) : json_object();
            history(c, "step_succeeded", r->step, r->attempt, json_incref(st->output));
            stage_done_or_wait(c);
        }
        break;
    case SAGA_REPLY_FAILED: {
        json_t *err = error_obj(r->error_code, r->error_message);
        st->awaiting = 0;
        st->due_at = 0;
        st->finished_at = c->ev->now;
        st->dirty = 1;
        set_error(st, json_incref(err));
        if (compensate) {
            /* A compensation must not fail for good: an operator decides. */
            st->status = SAGA_STEP_COMPENSATION_FAILED;
            history(c, "compensation_failed", r->step, r->attempt, err);
            s->status = SAGA_ST_FAILED;
            history(c, "saga_failed", r->step, r->attempt,
                    json_pack("{s:s}", "reason", "compensation failed definitively"));
        } else if (s->def->steps[r->step].forward_only && !s->def->steps[r->step].pivot) {
            /* The pivot's own definite failure means the point of no return
             * was not passed: that falls through to compensating the steps
             * before it. A step after it has nothing left to undo with. */
            st->status = SAGA_STEP_FAILED;
            history(c, "step_failed", r->step, r->attempt, err);
            s->status = SAGA_ST_FAILED;
            history(c, "saga_failed", r->step, r->attempt,
                    json_pack(
                        "{s:s}", "reason",
                        "a step at or after the pivot failed; it cannot be compensated"));
        } else {
            st->status = SAGA_STEP_FAILED;
            history(c, "step_failed", r->step, r->attempt, err);
            fail_stage(c, r->step, "step_failed");
        }
        break;
    }
    case SAGA_REPLY_RETRY:
        transient(c, r->step, error_obj(r->error_code, r->error_message), r->retry_after,
                  "attempt_failed");
        break;
    }
    return SAGA_APPLIED;
}

/* ---- operator commands ---- */

static json_t *op_detail(const saga_event *ev)
{
    return json_pack("{s:s, s:s}", "operator", ev->actor ? ev->actor : "?", "reason",
                     ev->reason ? ev->reason : "");
}

static int on_op_retry(ctx *c, const char **reason)
{
    saga_state *s = c->s;
    saga_step_state *st = &s->steps[s->cursor];
    const saga_step_def *sd = &s->def->steps[s->cursor];

    if (s->status == SAGA_ST_FAILED && st->status == SAGA_STEP_COMPENSATION_FAILED) {
        s->status = SAGA_ST_COMPENSATING;
        st->status = SAGA_STEP_COMPENSATING;
    } else if (s->status == SAGA_ST_FAILED && st->status == SAGA_STEP_FAILED &&
               sd->forward_only) {
        s->status = SAGA_ST_RUNNING;
        st->status = SAGA_STEP_DISPATCHED;
    } else if (s->status == SAGA_ST_RUNNING || s->status == SAGA_ST_COMPENSATING) {
        if (!cursor_consistent(s)) {
            *reason = "the saga's current step is in a state that cannot be retried";
            return SAGA_REJECTED;
        }
    } else {
        *reason = s->status == SAGA_ST_FAILED ? "nothing to retry in this failed saga"
                                              : "the saga has ended";
        return SAGA_REJECTED;
    }
    history(c, "operator_retry", s->cursor, st->attempts, op_detail(c->ev));
    /* A fresh budget; attempt numbers go on so late replies stay unambiguous.
     * Going forward, every step of the stage still waiting is re-sent. */
    {
        int first = s->cursor, last = s->cursor;
        const saga_status now = s->status;
        if (s->status == SAGA_ST_RUNNING)
            stage_of(s, &first, &last);
        for (int j = first; j <= last && s->status == now; j++) {
            saga_step_state *sj = &s->steps[j];
            if (sj->status != SAGA_STEP_DISPATCHED &&
                sj->status != SAGA_STEP_COMPENSATING)
                continue;
            sj->attempt_base = sj->attempts;
            sj->awaiting = 0;
            sj->dirty = 1;
            dispatch(c, j);
        }
    }
    return SAGA_APPLIED;
}

static int on_op_compensate(ctx *c, const char **reason)
{
    saga_state *s = c->s;

    if (s->status != SAGA_ST_RUNNING) {
        *reason = s->status == SAGA_ST_COMPENSATING
                      ? "the saga is already compensating"
                      : "only a running saga can be compensated";
        return SAGA_REJECTED;
    }
    if (!cursor_consistent(s)) {
        *reason = "the saga's current step is in an unexpected state";
        return SAGA_REJECTED;
    }
    if (past_return(s)) {
        *reason =
            "the saga is past its point of no return (a pivot, or an irreversible step "
            "in flight); it can only go forward: retry or skip";
        return SAGA_REJECTED;
    }
    history(c, "operator_compensate", s->cursor, s->steps[s->cursor].attempts,
            op_detail(c->ev));
    fail_stage(c, -1, "operator");
    return SAGA_APPLIED;
}

static int on_op_skip(ctx *c, const char **reason)
{
    saga_state *s = c->s;
    saga_step_state *st;
    int forward, first = s->cursor, last = s->cursor;

    /* Going forward, any step of the running stage; else the current one. */
    if (s->status == SAGA_ST_RUNNING)
        stage_of(s, &first, &last);
    if (c->ev->step < first || c->ev->step > last) {
        *reason = "only the saga's current step can be skipped";
        return SAGA_REJECTED;
    }
    st = &s->steps[c->ev->step];
    if (s->status == SAGA_ST_RUNNING && st->status == SAGA_STEP_DISPATCHED)
        forward = 1;
    else if (s->status == SAGA_ST_FAILED && st->status == SAGA_STEP_FAILED)
        forward = 1;
    else if (s->status == SAGA_ST_COMPENSATING && st->status == SAGA_STEP_COMPENSATING)
        forward = 0;
    else if (s->status == SAGA_ST_FAILED && st->status == SAGA_STEP_COMPENSATION_FAILED)
        forward = 0;
    else {
        *reason = saga_status_is_final(s->status)
                      ? "the saga has ended"
                      : "the current step cannot be skipped now";
        return SAGA_REJECTED;
    }
    st->awaiting = 0;
    st->due_at = 0;
    st->finished_at = c->ev->now;
    st->dirty = 1;
    set_error(st, NULL); /* done by hand: what failed before is in the history */
    if (forward) {
        json_t *d = op_detail(c->ev);
        s->status = SAGA_ST_RUNNING;
        st->status = SAGA_STEP_SKIPPED;
        json_decref(st->output);
        st->output = c->ev->output ? json_deep_copy(c->ev->output) : json_object();
        json_object_set(d, "output", st->output);
        history(c, "step_skipped", c->ev->step, st->attempts, d);
        stage_done_or_wait(c);
    } else {
        s->status = SAGA_ST_COMPENSATING;
        st->status = SAGA_STEP_COMPENSATED;
        history(c, "compensation_skipped", s->cursor, st->attempts, op_detail(c->ev));
        next_compensation(c, s->cursor - 1);
    }
    return SAGA_APPLIED;
}

static int on_op_resolve(ctx *c, const char **reason)
{
    if (c->s->status != SAGA_ST_FAILED) {
        *reason = "only a failed saga can be resolved";
        return SAGA_REJECTED;
    }
    c->s->status = SAGA_ST_RESOLVED;
    /* Nothing stays scheduled on a closed saga. */
    for (int i = 0; i < c->s->nsteps; i++)
        if (c->s->steps[i].awaiting || c->s->steps[i].due_at) {
            c->s->steps[i].awaiting = 0;
            c->s->steps[i].due_at = 0;
            c->s->steps[i].dirty = 1;
        }
    history(c, "saga_resolved", -1, 0, op_detail(c->ev));
    return SAGA_APPLIED;
}

static int on_operator(ctx *c, const char **reason)
{
    if (c->ev->reason == NULL || c->ev->reason[0] == '\0' || c->ev->actor == NULL ||
        c->ev->actor[0] == '\0') {
        *reason = "an operator command needs an operator and a reason";
        return SAGA_REJECTED;
    }
    if (c->s->status == SAGA_ST_NEW) {
        *reason = "the saga has not started";
        return SAGA_REJECTED;
    }
    if (c->s->cursor < 0 || c->s->cursor >= c->s->nsteps) {
        *reason = "the saga's current step is out of range";
        return SAGA_REJECTED;
    }
    switch (c->ev->kind) {
    case SAGA_EV_OP_RETRY:
        return on_op_retry(c, reason);
    case SAGA_EV_OP_COMPENSATE:
        return on_op_compensate(c, reason);
    case SAGA_EV_OP_SKIP:
        return on_op_skip(c, reason);
    default:
        return on_op_resolve(c, reason);
    }
}

static int on_wake(ctx *c, const char **reason)
{
    saga_state *s = c->s;
    const int64_t now = c->ev->now;
    const saga_status before = s->status;
    int first, last, fired = 0;

    if (s->status != SAGA_ST_RUNNING && s->status != SAGA_ST_COMPENSATING) {
        *reason = "saga has no timers";
        return SAGA_IGNORED;
    }
    if (!cursor_consistent(s)) {
        *reason = "the saga's current step is in a state that has no timer";
        return SAGA_REJECTED;
    }
    if (s->status == SAGA_ST_RUNNING && s->deadline_at > 0 && now >= s->deadline_at &&
        !past_return(s)) {
        /* What was sent may have had an effect: it is undone too. */
        history(c, "deadline_exceeded", s->cursor, s->steps[s->cursor].attempts, NULL);
        fail_stage(c, -1, "deadline_exceeded");
        return SAGA_APPLIED;
    }
    first = last = s->cursor;
    if (s->status == SAGA_ST_RUNNING)
        stage_of(s, &first, &last);
    for (int i = first; i <= last && s->status == before; i++) {
        saga_step_state *st = &s->steps[i];
        if (st->due_at == 0 || now < st->due_at)
            continue;
        if (before == SAGA_ST_RUNNING && st->status != SAGA_STEP_DISPATCHED)
            continue;
        fired = 1;
        if (st->awaiting) {
            char msg[128];
            snprintf(msg, sizeof msg, "no reply within %lld ms",
                     (long long)s->def->steps[i].timeout_ms);
            transient(c, i, error_obj("timeout", msg), 0, "attempt_timed_out");
        } else {
            dispatch(c, i);
        }
    }
    if (!fired) {
        *reason = "no timer is due";
        return SAGA_IGNORED;
    }
    return SAGA_APPLIED;
}

int saga_machine_apply(saga_state *s, const saga_event *ev, saga_actions *out,
                       const char **reason)
{
    ctx c = {s, ev, out, 0};
    const char *dummy;
    int rc, first = out->n, moved;
    /* The statuses before the event, to tell progress from a transition
     * that only rescheduled (progressed_at). Most sagas fit on the stack. */
    unsigned char before_small[32], *before = before_small;
    const saga_status status_before = s->status;

    if (reason == NULL)
        reason = &dummy;
    *reason = NULL;
    if (s->nsteps > (int)sizeof before_small &&
        (before = malloc((size_t)s->nsteps)) == NULL)
        return SAGA_ENOMEM;
    for (int i = 0; i < s->nsteps; i++) {
        s->steps[i].dirty = 0;
        before[i] = (unsigned char)s->steps[i].status;
    }
    switch (ev->kind) {
    case SAGA_EV_START:
        rc = on_start(&c, reason);
        break;
    case SAGA_EV_REPLY:
        rc = on_reply(&c, reason);
        break;
    case SAGA_EV_WAKE:
        rc = on_wake(&c, reason);
        break;
    case SAGA_EV_OP_RETRY:
    case SAGA_EV_OP_COMPENSATE:
    case SAGA_EV_OP_SKIP:
    case SAGA_EV_OP_RESOLVE:
        rc = on_operator(&c, reason);
        break;
    default:
        *reason = "unknown event kind";
        rc = SAGA_REJECTED;
        break;
    }
    moved = s->status != status_before;
    for (int i = 0; i < s->nsteps && !moved; i++)
        moved = before[i] != (unsigned char)s->steps[i].status;
    if (before != before_small)
        free(before);
    if (c.oom) {
        while (out->n > first) {
            out->n--;
            json_decref(out->items[out->n].payload);
            json_decref(out->items[out->n].detail);
        }
        return SAGA_ENOMEM;
    }
    if (rc == SAGA_APPLIED) {
        s->updated_at = ev->now;
        if (moved)
            s->progressed_at = ev->now;
        update_wake(s);
    }
    return rc;
}

int saga_machine_hold(saga_state *s, saga_actions *acts, int index, int64_t until,
                      const char *why, json_t *detail)
{
    saga_action *a;
    saga_step_state *st;
    int step, attempt;

    if (s == NULL || acts == NULL || index < 0 || index >= acts->n ||
        acts->items[index].kind != SAGA_ACT_SEND) {
        json_decref(detail);
        return SAGA_EINVAL;
    }
    a = &acts->items[index];
    step = a->step;
    attempt = a->attempt;
    st = &s->steps[step];
    if (st->attempts != attempt || !st->awaiting) {
        json_decref(detail);
        return SAGA_EINVAL;
    }
    /* Undo what dispatch() did: the attempt was never made. */
    st->attempts--;
    st->awaiting = 0;
    st->due_at = until;
    if (st->attempts == 0 && a->phase == SAGA_PHASE_INVOKE)
        st->started_at = 0;
    st->dirty = 1;
    json_decref(a->payload);
    memmove(a, a + 1, sizeof *a * (size_t)(acts->n - index - 1));
    acts->n--;
    /* ... and its history line, which would claim a dispatch. */
    for (int i = 0; i < acts->n; i++) {
        saga_action *h = &acts->items[i];
        if (h->kind == SAGA_ACT_HISTORY && h->step == step && h->attempt == attempt &&
            (strcmp(h->what, "step_dispatched") == 0 ||
             strcmp(h->what, "compensation_dispatched") == 0)) {
            if (why == NULL) {
                json_decref(h->detail);
                memmove(h, h + 1, sizeof *h * (size_t)(acts->n - i - 1));
                acts->n--;
            } else {
                /* Said in its place: the saga waits, and why. */
                json_t *d =
                    json_is_object(h->detail) ? json_deep_copy(h->detail) : json_object();
                if (d == NULL) {
                    json_decref(detail);
                    return SAGA_ENOMEM;
                }
                if (detail != NULL)
                    json_object_update(d, detail);
                json_object_set_new(d, "until", json_integer(until));
                json_decref(h->detail);
                h->detail = d;
                h->what = why;
                h->attempt = attempt - 1;
            }
            break;
        }
    }
    json_decref(detail);
    update_wake(s);
    return SAGA_OK;
}
