/* saga_machine_steps.c - how a saga moves: dispatch the cursor's step (or
 * its parallel group), advance past what succeeded, fail a stage and walk
 * the compensations back in reverse order, retry what failed transiently
 * with back-off; and a fan-out step's elements, which move the same way
 * (one command each, at most `concurrency` in flight; the step succeeds
 * with the list of their outputs, fails as soon as one element fails for
 * good, and is undone element by element). One file: each of these may
 * lead to any other (a failure starts compensating, a compensation
 * dispatches). Pure. */
#include "saga_child.h"
#include "saga_condition.h"
#include "saga_machine_internal.h"

/* Step i cannot be sent (its input or its list does not resolve): a
 * definite failure of it, with nothing to undo of it, since nothing was
 * sent. The steps before are compensated, or, past the pivot, an operator
 * decides. */
void saga__machine_cannot_run(saga__machine_ctx *c, int i, const char *code,
                              const char *message)
{
    saga_state *s = c->s;
    saga_step_state *st = &s->steps[i];
    const saga_step_def *sd = &s->def->steps[i];
    st->status = SAGA_STEP_FAILED;
    st->finished_at = c->ev->now;
    st->due_at = 0;
    st->awaiting = 0;
    saga__machine_set_error(st, saga__machine_error_obj(code, message));
    st->dirty = 1;
    saga__machine_history(c, SAGA_HIST_STEP_FAILED, i, st->attempts,
                          saga__machine_error_obj(code, message));
    if (sd->forward_only && !sd->pivot) {
        /* Past the point of no return nothing may be undone: as for a
         * definite failure there, an operator decides. */
        s->status = SAGA_ST_FAILED;
        saga__machine_history(
            c, SAGA_HIST_SAGA_FAILED, i, st->attempts,
            json_pack("{s:s}", "reason",
                      "a step after the pivot cannot be run (its input does not "
                      "resolve); it cannot be compensated"));
        return;
    }
    saga__machine_fail_stage(c, i, "step_failed");
}

/* A child step's turn: its child saga is started (its input resolved as
 * a step's; the id is the step's own, so a second start is the same
 * saga), or, being undone, asked to be undone. No timer: the child's end
 * ends the step (SAGA_EV_CHILD_ENDED). */
static void child_dispatch(saga__machine_ctx *c, int i, int compensate)
{
    saga_state *s = c->s;
    saga_step_state *st = &s->steps[i];
    const saga_step_def *sd = &s->def->steps[i];
    char child[SAGA_ID_LEN + 1];
    json_t *input = NULL;
    saga_action *a;

    if (!compensate) {
        saga_error err = {0};
        json_t *ctxj = saga_state_context(s);
        input = ctxj ? saga_template_resolve(sd->input, ctxj, &err) : NULL;
        json_decref(ctxj);
        if (input == NULL) {
            saga__machine_cannot_run(c, i, "input", err.message);
            return;
        }
    }
    saga_child_id(s->id, i, child);
    st->attempts++;
    st->awaiting = 1;
    st->due_at = 0;
    if (st->attempts == 1 && !compensate)
        st->started_at = c->ev->now;
    st->dirty = 1;
    if ((a = saga__machine_push(c, compensate ? SAGA_ACT_COMPENSATE_CHILD
                                              : SAGA_ACT_START_CHILD)) == NULL) {
        json_decref(input);
        return;
    }
    a->step = i;
    a->element = -1;
    a->attempt = st->attempts;
    a->payload = input;
    saga__machine_history(
        c, compensate ? SAGA_HIST_CHILD_COMPENSATION_ASKED : SAGA_HIST_CHILD_STARTED, i,
        st->attempts,
        json_pack("{s:s, s:s}", "definition", sd->child, "child_id", child));
}

/* Send the command for step i in its current phase, as attempt attempts+1. */
void saga__machine_dispatch(saga__machine_ctx *c, int i)
{
    saga_state *s = c->s;
    saga_step_state *st = &s->steps[i];
    const saga_step_def *sd = &s->def->steps[i];
    int compensate = st->status == SAGA_STEP_COMPENSATING;
    saga_error err = {0};
    json_t *ctxj = saga_state_context(s), *payload;
    saga_action *a;

    if (sd->child != NULL) {
        json_decref(ctxj);
        child_dispatch(c, i, compensate);
        return;
    }
    if (sd->wait_signal != NULL && !compensate) {
        /* Nothing is sent: the step waits for its signal (and its timeout,
         * if it has one). */
        json_decref(ctxj);
        st->attempts++;
        st->awaiting = 1;
        st->due_at = sd->wait_timeout_ms > 0 ? c->ev->now + sd->wait_timeout_ms : 0;
        if (st->attempts == 1)
            st->started_at = c->ev->now;
        st->dirty = 1;
        saga__machine_history(c, SAGA_HIST_STEP_WAITING, i, st->attempts,
                              json_pack("{s:s, s:I}", "signal", sd->wait_signal,
                                        "timeout_ms", (json_int_t)sd->wait_timeout_ms));
        return;
    }
    payload = ctxj ? saga_template_resolve(sd->input, ctxj, &err) : NULL;
    json_decref(ctxj);
    if (payload == NULL && !compensate) {
        saga__machine_cannot_run(c, i, "input", err.message);
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
    a = saga__machine_push(c, SAGA_ACT_SEND);
    if (a == NULL) {
        json_decref(payload);
        return;
    }
    a->step = i;
    a->element = -1;
    a->phase = compensate ? SAGA_PHASE_COMPENSATE : SAGA_PHASE_INVOKE;
    a->attempt = st->attempts;
    a->deadline = st->due_at;
    a->payload = payload;
    saga__machine_history(
        c, compensate ? SAGA_HIST_COMPENSATION_DISPATCHED : SAGA_HIST_STEP_DISPATCHED, i,
        st->attempts,
        json_pack("{s:s, s:s}", "service", sd->service, "action",
                  compensate ? sd->compensation : sd->action));
}

/* Begin step i going forward, or complete the saga past the last step. */
void saga__machine_advance(saga__machine_ctx *c, int i)
{
    saga_state *s = c->s;
    if (i >= s->nsteps) {
        s->cursor = s->nsteps - 1;
        saga__machine_finish(c, SAGA_ST_COMPLETED, SAGA_HIST_SAGA_COMPLETED);
        return;
    }
    s->cursor = i;
    /* Every step of the stage goes out at once; they run in parallel. A
     * step whose "when" is false is not run (nothing to undo later). */
    for (int j = i; j <= s->def->steps[i].stage_last && s->status == SAGA_ST_RUNNING;
         j++) {
        const saga_step_def *sd = &s->def->steps[j];
        if (sd->when != NULL) {
            json_t *ctxj = saga_state_context(s);
            int run = ctxj != NULL && saga_condition_eval(sd->when, ctxj);
            json_decref(ctxj);
            if (ctxj == NULL) {
                c->oom = 1;
                return;
            }
            if (!run) {
                s->steps[j].status = SAGA_STEP_NOT_RUN;
                s->steps[j].finished_at = c->ev->now;
                s->steps[j].dirty = 1;
                saga__machine_history(
                    c, SAGA_HIST_STEP_NOT_RUN, j, 0,
                    json_pack("{s:s}", "reason", "its condition is false"));
                continue;
            }
        }
        s->steps[j].status = SAGA_STEP_DISPATCHED;
        s->steps[j].attempts = 0;
        if (sd->for_each != NULL)
            saga__fanout_begin(c, j);
        else
            saga__machine_dispatch(c, j);
    }
    /* Nothing of the stage went out: on to the next. */
    if (s->status == SAGA_ST_RUNNING)
        saga__machine_stage_done_or_wait(c);
}

/* Step `step` of the running stage failed or its outcome is unknown: the
 * other steps of the stage that were sent may have acted (their outcome is
 * unknown now; late replies are ignored), and everything done is undone in
 * reverse order, from the end of the stage. */
void saga__machine_fail_stage(saga__machine_ctx *c, int step, const char *why)
{
    saga_state *s = c->s;
    /* step -1: no step failed (a deadline, an operator): abort the stage. */
    const saga_step_def *sd = &s->def->steps[step >= 0 ? step : s->cursor];
    for (int j = sd->stage_first; j <= sd->stage_last; j++) {
        saga_step_state *st = &s->steps[j];
        /* A fan-out's elements in flight may have acted, as a step may. */
        saga__fanout_abandon(c, j);
        if (j == step || st->status != SAGA_STEP_DISPATCHED)
            continue;
        st->status = st->attempts > 0 ? SAGA_STEP_UNKNOWN : SAGA_STEP_PENDING;
        st->awaiting = 0;
        st->due_at = 0;
        st->dirty = 1;
    }
    c->s->status = SAGA_ST_COMPENSATING;
    saga__machine_history(c, SAGA_HIST_COMPENSATION_STARTED, step >= 0 ? step : s->cursor,
                          0, json_pack("{s:s}", "reason", why));
    saga__machine_next_compensation(c, sd->stage_last);
}

/* All steps of the cursor's stage are done: move on. */
void saga__machine_stage_done_or_wait(saga__machine_ctx *c)
{
    saga_state *s = c->s;
    int first, last;
    saga__machine_stage_of(s, &first, &last);
    for (int j = first; j <= last; j++)
        if (s->steps[j].status != SAGA_STEP_SUCCEEDED &&
            s->steps[j].status != SAGA_STEP_SKIPPED &&
            s->steps[j].status != SAGA_STEP_NOT_RUN)
            return;
    saga__machine_advance(c, last + 1);
}

void saga__machine_next_compensation(saga__machine_ctx *c, int from)
{
    saga_state *s = c->s;
    for (int i = from; i >= 0; i--) {
        saga_step_state *st = &s->steps[i];
        const saga_step_def *sd = &s->def->steps[i];
        /* A fan-out is undone by its elements, whatever its own status. */
        if (sd->for_each != NULL) {
            if (saga__fanout_compensate(c, i))
                return;
            continue;
        }
        /* A step an operator skipped counts as done: its effect exists. */
        if (st->status != SAGA_STEP_SUCCEEDED && st->status != SAGA_STEP_UNKNOWN &&
            st->status != SAGA_STEP_SKIPPED)
            continue;
        if (sd->forward_only)
            continue; /* never happens before a pivot, kept for safety */
        if (sd->compensation == NULL && sd->child == NULL) {
            saga__machine_history(c, SAGA_HIST_COMPENSATION_NOT_NEEDED, i, 0, NULL);
            continue;
        }
        s->cursor = i;
        st->status = SAGA_STEP_COMPENSATING;
        st->attempts = 0;
        st->attempt_base = 0;
        /* The error, like the attempt count, is the current phase's: the
         * action's (a timeout, for an unknown outcome) stays in the history. */
        saga__machine_set_error(st, NULL);
        st->dirty = 1;
        saga__machine_dispatch(c, i);
        return;
    }
    s->cursor = from < 0 ? 0 : from;
    saga__machine_finish(c, SAGA_ST_COMPENSATED, SAGA_HIST_SAGA_COMPENSATED);
}

/* A transient failure of the current attempt (retry reply or timeout). */
void saga__machine_transient(saga__machine_ctx *c, int i, json_t *err,
                             int64_t retry_after, saga_history_kind what)
{
    saga_state *s = c->s;
    saga_step_state *st = &s->steps[i];
    int compensate = st->status == SAGA_STEP_COMPENSATING;
    if (saga__machine_retry_later(c, i, -1, st, err, retry_after, what))
        return;
    st->due_at = 0;
    st->finished_at = c->ev->now;
    if (compensate) {
        st->status = SAGA_STEP_COMPENSATION_FAILED;
        s->status = SAGA_ST_FAILED;
        saga__machine_history(c, SAGA_HIST_SAGA_FAILED, i, st->attempts,
                              json_pack("{s:s, s:i, s:O}", "reason",
                                        "compensation retries exhausted", "attempts",
                                        st->attempts, "last_error", st->error));
        return;
    }
    st->status = SAGA_STEP_UNKNOWN;
    saga__machine_history(c, SAGA_HIST_STEP_OUTCOME_UNKNOWN, i, st->attempts,
                          json_pack("{s:i}", "attempts", st->attempts));
    saga__machine_fail_stage(c, i, "retries_exhausted");
}

/* The whole step gives up (an element failed for good, or its outcome is
 * unknown): err (taken) becomes the step's error. Past the pivot an
 * operator decides; before it, the stage is undone. */
static void step_gives_up(saga__machine_ctx *c, int i, saga_step_status status,
                          const char *why, json_t *err)
{
    saga_state *s = c->s;
    saga_step_state *st = &s->steps[i];
    st->status = status;
    st->finished_at = c->ev->now;
    st->dirty = 1;
    saga__machine_set_error(st, err);
    if (s->def->steps[i].forward_only) {
        /* The elements in flight are sent again by an operator's retry. */
        s->status = SAGA_ST_FAILED;
        saga__fanout_clear_timers(s, i);
        saga__machine_history(c, SAGA_HIST_SAGA_FAILED, i, st->attempts,
                              json_pack("{s:s}", "reason",
                                        "an element of a fan-out after the pivot failed; "
                                        "it cannot be compensated"));
        return;
    }
    saga__machine_fail_stage(c, i, why);
}

/* Element e's action failed for good: nothing of it to undo. err taken. */
void saga__fanout_element_failed(saga__machine_ctx *c, int i, int e, json_t *err)
{
    saga_step_state *el = &c->s->steps[i].elements[e];
    el->status = SAGA_STEP_FAILED;
    el->awaiting = 0;
    el->due_at = 0;
    el->finished_at = c->ev->now;
    el->dirty = 1;
    saga__machine_set_error(el, json_incref(err));
    saga__machine_history(c, SAGA_HIST_STEP_FAILED, i, el->attempts,
                          saga__machine_el(json_incref(err), e));
    step_gives_up(c, i, SAGA_STEP_FAILED, "step_failed", saga__machine_el(err, e));
}

/* Send element e of step i in its current phase, as attempt attempts+1. */
void saga__fanout_dispatch(saga__machine_ctx *c, int i, int e)
{
    saga_state *s = c->s;
    saga_step_state *el = &s->steps[i].elements[e];
    const saga_step_def *sd = &s->def->steps[i];
    int compensate = el->status == SAGA_STEP_COMPENSATING;
    saga_error err = {0};
    json_t *ctxj = saga__fanout_context(s, i, e), *payload;
    saga_action *a;

    if (ctxj == NULL) {
        c->oom = 1;
        return;
    }
    payload = saga_template_resolve(sd->input, ctxj, &err);
    json_decref(ctxj);
    if (payload == NULL && !compensate) {
        /* Nothing was sent: a definite failure of this element. */
        saga__fanout_element_failed(c, i, e,
                                    saga__machine_error_obj("input", err.message));
        return;
    }
    if (compensate)
        payload = json_pack("{s:o, s:O}", "input", payload ? payload : json_object(),
                            "output", el->output ? el->output : json_null());
    el->attempts++;
    el->awaiting = 1;
    el->due_at = c->ev->now + sd->timeout_ms;
    if (el->attempts == 1 && !compensate)
        el->started_at = c->ev->now;
    el->dirty = 1;
    a = saga__machine_push(c, SAGA_ACT_SEND);
    if (a == NULL) {
        json_decref(payload);
        return;
    }
    a->step = i;
    a->element = e;
    a->phase = compensate ? SAGA_PHASE_COMPENSATE : SAGA_PHASE_INVOKE;
    a->attempt = el->attempts;
    a->deadline = el->due_at;
    a->payload = payload;
    saga__machine_history(
        c, compensate ? SAGA_HIST_COMPENSATION_DISPATCHED : SAGA_HIST_STEP_DISPATCHED, i,
        el->attempts,
        json_pack("{s:s, s:s, s:i}", "service", sd->service, "action",
                  compensate ? sd->compensation : sd->action, "element", e));
}

/* Send the next elements while fewer than `concurrency` are in flight:
 * going forward in list order, undoing in reverse. */
void saga__fanout_fill(saga__machine_ctx *c, int i)
{
    saga_state *s = c->s;
    saga_step_state *st = &s->steps[i];
    const int compensate = st->status == SAGA_STEP_COMPENSATING;
    const saga_step_status active =
        compensate ? SAGA_STEP_COMPENSATING : SAGA_STEP_DISPATCHED;
    const saga_status running = compensate ? SAGA_ST_COMPENSATING : SAGA_ST_RUNNING;
    int busy = 0;

    for (int e = 0; e < st->nelements; e++)
        busy += st->elements[e].status == active;
    for (int k = 0; k < st->nelements && busy < s->def->steps[i].concurrency; k++) {
        int e = compensate ? st->nelements - 1 - k : k;
        saga_step_state *el = &st->elements[e];
        /* A failed element stops the step going forward (and moves it on). */
        if (s->status != running || st->status != active)
            return;
        if (compensate ? !saga__fanout_to_undo(el->status)
                       : el->status != SAGA_STEP_PENDING)
            continue;
        el->status = active;
        el->attempts = 0;
        el->attempt_base = 0;
        if (compensate)
            saga__machine_set_error(el, NULL);
        el->dirty = 1;
        busy++;
        saga__fanout_dispatch(c, i, e);
    }
}

void saga__fanout_begin(saga__machine_ctx *c, int i)
{
    saga_state *s = c->s;
    saga_step_state *st = &s->steps[i];
    const saga_step_def *sd = &s->def->steps[i];
    char msg[400] = "";
    int n = saga__fanout_list_size(s, i, msg, sizeof msg);

    if (n == -2) {
        c->oom = 1;
        return;
    }
    if (n < 0) {
        saga__machine_cannot_run(c, i, "for_each", msg);
        return;
    }
    st->attempts = 1;
    st->started_at = c->ev->now;
    st->dirty = 1;
    saga__machine_history(
        c, SAGA_HIST_FANOUT_STARTED, i, st->attempts,
        json_pack("{s:i, s:i}", "elements", n, "concurrency", sd->concurrency));
    if (n == 0) {
        /* Nothing to run: done, with nothing to undo. */
        st->status = SAGA_STEP_SUCCEEDED;
        st->finished_at = c->ev->now;
        json_decref(st->output);
        st->output = json_array();
        saga__machine_history(c, SAGA_HIST_STEP_SUCCEEDED, i, st->attempts,
                              json_pack("{s:i}", "elements", 0));
        saga__machine_stage_done_or_wait(c);
        return;
    }
    st->elements = calloc((size_t)n, sizeof *st->elements);
    if (st->elements == NULL) {
        c->oom = 1;
        return;
    }
    st->nelements = n;
    for (int e = 0; e < n; e++) {
        st->elements[e].status = SAGA_STEP_PENDING;
        st->elements[e].dirty = 1;
    }
    saga__fanout_fill(c, i);
    saga__fanout_sync(s, i);
}

/* An element succeeded: send the next, or, once all did, the step did. */
void saga__fanout_forward(saga__machine_ctx *c, int i)
{
    saga_state *s = c->s;
    saga_step_state *st = &s->steps[i];
    json_t *outputs;

    saga__fanout_fill(c, i);
    if (s->status != SAGA_ST_RUNNING || st->status != SAGA_STEP_DISPATCHED)
        return;
    for (int e = 0; e < st->nelements; e++)
        if (st->elements[e].status != SAGA_STEP_SUCCEEDED &&
            st->elements[e].status != SAGA_STEP_SKIPPED)
            return;
    if ((outputs = json_array()) == NULL) {
        c->oom = 1;
        return;
    }
    for (int e = 0; e < st->nelements; e++) {
        json_t *o = st->elements[e].output;
        json_array_append_new(outputs, o ? json_incref(o) : json_object());
    }
    st->status = SAGA_STEP_SUCCEEDED;
    st->finished_at = c->ev->now;
    st->dirty = 1;
    saga__machine_set_error(st, NULL);
    json_decref(st->output);
    st->output = outputs;
    saga__fanout_sync(s, i);
    saga__machine_history(c, SAGA_HIST_STEP_SUCCEEDED, i, st->attempts,
                          json_pack("{s:i}", "elements", st->nelements));
    saga__machine_stage_done_or_wait(c);
}

/* An element was undone: undo the next, or, once none is left, go on
 * before the step. */
void saga__fanout_backward(saga__machine_ctx *c, int i)
{
    saga_state *s = c->s;
    saga_step_state *st = &s->steps[i];
    int undone = 0;

    saga__fanout_fill(c, i);
    if (s->status != SAGA_ST_COMPENSATING || st->status != SAGA_STEP_COMPENSATING)
        return;
    for (int e = 0; e < st->nelements; e++) {
        saga_step_status es = st->elements[e].status;
        if (es == SAGA_STEP_COMPENSATING || saga__fanout_to_undo(es))
            return;
        undone += es == SAGA_STEP_COMPENSATED;
    }
    st->status = SAGA_STEP_COMPENSATED;
    st->finished_at = c->ev->now;
    st->dirty = 1;
    saga__machine_set_error(st, NULL);
    saga__fanout_sync(s, i);
    saga__machine_history(c, SAGA_HIST_STEP_COMPENSATED, i, st->attempts,
                          json_pack("{s:i}", "elements", undone));
    saga__machine_next_compensation(c, i - 1);
}

/* A transient failure of element e (a retry reply or a timeout). */
void saga__fanout_transient(saga__machine_ctx *c, int i, int e, json_t *err,
                            int64_t retry_after, saga_history_kind what)
{
    saga_step_state *el = &c->s->steps[i].elements[e];
    int compensate = el->status == SAGA_STEP_COMPENSATING;
    if (saga__machine_retry_later(c, i, e, el, err, retry_after, what))
        return;
    el->due_at = 0;
    el->finished_at = c->ev->now;
    if (compensate) {
        saga__fanout_compensation_failed(c, i, e, "compensation retries exhausted");
        return;
    }
    el->status = SAGA_STEP_UNKNOWN;
    saga__machine_history(
        c, SAGA_HIST_STEP_OUTCOME_UNKNOWN, i, el->attempts,
        json_pack("{s:i, s:i}", "attempts", el->attempts, "element", e));
    step_gives_up(c, i, SAGA_STEP_UNKNOWN, "retries_exhausted",
                  el->error ? json_deep_copy(el->error) : NULL);
}

int saga__fanout_compensate(saga__machine_ctx *c, int i)
{
    saga_state *s = c->s;
    saga_step_state *st = &s->steps[i];
    const saga_step_def *sd = &s->def->steps[i];
    int pending = 0;

    if (sd->forward_only)
        return 0;
    for (int e = 0; e < st->nelements && st->elements != NULL; e++)
        pending += saga__fanout_to_undo(st->elements[e].status);
    if (pending == 0)
        return 0;
    if (sd->compensation == NULL) {
        saga__machine_history(c, SAGA_HIST_COMPENSATION_NOT_NEEDED, i, 0, NULL);
        return 0;
    }
    s->cursor = i;
    st->status = SAGA_STEP_COMPENSATING;
    saga__machine_set_error(st, NULL);
    st->dirty = 1;
    saga__fanout_fill(c, i);
    saga__fanout_sync(s, i);
    return 1;
}
