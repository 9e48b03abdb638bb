/* saga_machine_steps.c - how a saga moves: dispatch the cursor's step (or
 * its parallel group), advance past what succeeded, fail a stage and walk
 * the compensations back in reverse order, retry what failed transiently
 * with back-off, and arm the saga's next timer. Pure. */
#include "saga_condition.h"
#include "saga_machine_internal.h"

/* Has the saga passed the point where a deadline may still undo it? Past a
 * pivot, or while an irreversible step may have taken effect. */
int saga__machine_past_return(const saga_state *s)
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
void saga__machine_stage_of(const saga_state *s, int *first, int *last)
{
    *first = s->def->steps[s->cursor].stage_first;
    *last = s->def->steps[s->cursor].stage_last;
}

/* Recompute the saga's earliest timer. */
void saga__machine_update_wake(saga_state *s)
{
    int64_t w = 0;
    if (s->status == SAGA_ST_RUNNING || s->status == SAGA_ST_COMPENSATING) {
        if (s->cursor >= 0 && s->cursor < s->nsteps) {
            int first = s->cursor, last = s->cursor;
            if (s->status == SAGA_ST_RUNNING)
                saga__machine_stage_of(s, &first, &last);
            for (int i = first; i <= last; i++)
                if (s->steps[i].due_at > 0 && (w == 0 || s->steps[i].due_at < w))
                    w = s->steps[i].due_at;
        }
        if (s->status == SAGA_ST_RUNNING && s->deadline_at > 0 &&
            (w == 0 || s->deadline_at < w) && !saga__machine_past_return(s))
            w = s->deadline_at;
    }
    s->wake_at = w;
}

void saga__machine_next_compensation(saga__machine_ctx *c, int from);

void saga__machine_fail_stage(saga__machine_ctx *c, int step, const char *why);

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
        /* A reference that resolves to nothing is a definite failure of
         * this step: nothing was sent, so there is nothing to undo here. */
        st->status = SAGA_STEP_FAILED;
        st->finished_at = c->ev->now;
        st->due_at = 0;
        st->awaiting = 0;
        saga__machine_set_error(st, saga__machine_error_obj("input", err.message));
        st->dirty = 1;
        saga__machine_history(c, SAGA_HIST_STEP_FAILED, i, st->attempts,
                              saga__machine_error_obj("input", err.message));
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
        /* A step an operator skipped counts as done: its effect exists. */
        if (st->status != SAGA_STEP_SUCCEEDED && st->status != SAGA_STEP_UNKNOWN &&
            st->status != SAGA_STEP_SKIPPED)
            continue;
        if (sd->forward_only)
            continue; /* never happens before a pivot, kept for safety */
        if (sd->compensation == NULL) {
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
    const saga_step_def *sd = &s->def->steps[i];
    int compensate = st->status == SAGA_STEP_COMPENSATING;
    const saga_retry_policy *pol = compensate ? &sd->compensation_retry : &sd->retry;
    /* An action whose effect could not be undone is never given up on:
     * compensating the steps before it would leave that effect alone. */
    int unlimited = !compensate && (sd->forward_only || sd->irreversible);

    saga__machine_set_error(st, json_incref(err));
    st->dirty = 1;
    st->awaiting = 0;
    saga__machine_history(c, what, i, st->attempts, err);
    if (unlimited || st->attempts - st->attempt_base < pol->max_attempts) {
        int64_t delay = saga_backoff_ms(pol, st->attempts, c->ev->random);
        if (retry_after > delay)
            delay = retry_after;
        st->due_at = c->ev->now + delay;
        saga__machine_history(c, SAGA_HIST_RETRY_SCHEDULED, i, st->attempts,
                              json_pack("{s:I, s:I}", "delay_ms", (json_int_t)delay, "at",
                                        (json_int_t)st->due_at));
        return;
    }
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

/* Going forward the cursor step is dispatched; compensating, it is being
 * compensated. Any other combination cannot come from this machine (a
 * hand-edited row, say): refuse to act on it rather than guess. */
int saga__machine_cursor_consistent(const saga_state *s)
{
    saga_step_status st;
    if (s->cursor < 0 || s->cursor >= s->nsteps)
        return 0;
    st = s->steps[s->cursor].status;
    if (s->status == SAGA_ST_RUNNING) {
        int first, last, waiting = 0;
        saga__machine_stage_of(s, &first, &last);
        if (s->cursor != first)
            return 0;
        for (int j = first; j <= last; j++) {
            saga_step_status sj = s->steps[j].status;
            if (sj == SAGA_STEP_DISPATCHED)
                waiting = 1;
            else if (sj != SAGA_STEP_SUCCEEDED && sj != SAGA_STEP_SKIPPED &&
                     sj != SAGA_STEP_NOT_RUN)
                return 0;
        }
        return waiting;
    }
    return st == SAGA_STEP_COMPENSATING;
}
