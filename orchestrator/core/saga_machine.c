/* saga_machine.c - the pure saga state machine's entry: saga_machine_apply
 * takes a saga's state and one event (start, reply, timer, operator) and
 * returns the new state and the actions (send, history). Time and
 * randomness come in the event; no I/O. See saga_machine.h and
 * docs/GUARANTEES.md. Starts, replies and timers are handled here; how a
 * step is dispatched, advanced or compensated is saga_machine_steps.c. */
#include "saga_machine_internal.h"

static int on_start(saga__machine_ctx *c, const char **reason)
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
    saga__machine_history(c, SAGA_HIST_SAGA_STARTED, -1, 0,
                          s->parent_id[0] != '\0'
                              ? json_pack("{s:s, s:i, s:s, s:i}", "definition",
                                          s->def->name, "version", s->def->version,
                                          "parent_id", s->parent_id, "parent_step",
                                          s->parent_step)
                              : json_pack("{s:s, s:i}", "definition", s->def->name,
                                          "version", s->def->version));
    saga__machine_advance(c, 0);
    return SAGA_APPLIED;
}

static int on_reply(saga__machine_ctx *c, const char **reason)
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
    if (!saga__machine_cursor_consistent(s)) {
        *reason = "the saga's current step is in a state that awaits no reply";
        return SAGA_REJECTED;
    }
    if (s->def->steps[r->step].wait_signal != NULL) {
        /* No command went out for it: only its signal ends it. */
        *reason = "a reply for a wait step (it takes a signal, not a reply)";
        return SAGA_IGNORED;
    }
    if (s->def->steps[r->step].child != NULL) {
        /* No command went out for it: only its child's end ends it. */
        *reason = "a reply for a child step (its child saga's end ends it)";
        return SAGA_IGNORED;
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
    if (s->def->steps[r->step].for_each != NULL)
        return saga__fanout_on_reply(c, reason);
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
            saga__machine_set_error(st, NULL);
            saga__machine_history(c, SAGA_HIST_STEP_COMPENSATED, r->step, r->attempt,
                                  r->output ? json_incref(r->output) : NULL);
            saga__machine_next_compensation(c, r->step - 1);
        } else {
            st->status = SAGA_STEP_SUCCEEDED;
            /* An earlier attempt's error is history now, not the step's. */
            saga__machine_set_error(st, NULL);
            json_decref(st->output);
            st->output = r->output ? json_incref(r->output) : json_object();
            saga__machine_history(c, SAGA_HIST_STEP_SUCCEEDED, r->step, r->attempt,
                                  json_incref(st->output));
            saga__machine_stage_done_or_wait(c);
        }
        break;
    case SAGA_REPLY_FAILED: {
        json_t *err = saga__machine_error_obj(r->error_code, r->error_message);
        st->awaiting = 0;
        st->due_at = 0;
        st->finished_at = c->ev->now;
        st->dirty = 1;
        saga__machine_set_error(st, json_incref(err));
        if (compensate) {
            /* A compensation must not fail for good: an operator decides. */
            st->status = SAGA_STEP_COMPENSATION_FAILED;
            saga__machine_history(c, SAGA_HIST_COMPENSATION_FAILED, r->step, r->attempt,
                                  err);
            s->status = SAGA_ST_FAILED;
            saga__machine_history(
                c, SAGA_HIST_SAGA_FAILED, r->step, r->attempt,
                json_pack("{s:s}", "reason", "compensation failed definitively"));
        } else if (s->def->steps[r->step].forward_only && !s->def->steps[r->step].pivot) {
            /* The pivot's own definite failure means the point of no return
             * was not passed: that falls through to compensating the steps
             * before it. A step after it has nothing left to undo with. */
            st->status = SAGA_STEP_FAILED;
            saga__machine_history(c, SAGA_HIST_STEP_FAILED, r->step, r->attempt, err);
            s->status = SAGA_ST_FAILED;
            saga__machine_history(
                c, SAGA_HIST_SAGA_FAILED, r->step, r->attempt,
                json_pack(
                    "{s:s}", "reason",
                    "a step at or after the pivot failed; it cannot be compensated"));
        } else {
            st->status = SAGA_STEP_FAILED;
            saga__machine_history(c, SAGA_HIST_STEP_FAILED, r->step, r->attempt, err);
            saga__machine_fail_stage(c, r->step, "step_failed");
        }
        break;
    }
    case SAGA_REPLY_RETRY:
        saga__machine_transient(c, r->step,
                                saga__machine_error_obj(r->error_code, r->error_message),
                                r->retry_after, SAGA_HIST_ATTEMPT_FAILED);
        break;
    }
    return SAGA_APPLIED;
}

static int on_wake(saga__machine_ctx *c, const char **reason)
{
    saga_state *s = c->s;
    const int64_t now = c->ev->now;
    const saga_status before = s->status;
    int first, last, fired = 0;

    if (s->status != SAGA_ST_RUNNING && s->status != SAGA_ST_COMPENSATING) {
        *reason = "saga has no timers";
        return SAGA_IGNORED;
    }
    if (!saga__machine_cursor_consistent(s)) {
        *reason = "the saga's current step is in a state that has no timer";
        return SAGA_REJECTED;
    }
    if (s->status == SAGA_ST_RUNNING && s->deadline_at > 0 && now >= s->deadline_at &&
        !saga__machine_past_return(s)) {
        /* What was sent may have had an effect: it is undone too. */
        saga__machine_history(c, SAGA_HIST_DEADLINE_EXCEEDED, s->cursor,
                              s->steps[s->cursor].attempts, NULL);
        saga__machine_fail_stage(c, -1, "deadline_exceeded");
        return SAGA_APPLIED;
    }
    first = last = s->cursor;
    if (s->status == SAGA_ST_RUNNING)
        saga__machine_stage_of(s, &first, &last);
    for (int i = first; i <= last && s->status == before; i++) {
        saga_step_state *st = &s->steps[i];
        if (st->due_at == 0 || now < st->due_at)
            continue;
        if (before == SAGA_ST_RUNNING && st->status != SAGA_STEP_DISPATCHED)
            continue;
        fired = 1;
        if (s->def->steps[i].for_each != NULL) {
            saga__fanout_wake(c, i);
        } else if (st->awaiting && s->def->steps[i].wait_signal != NULL &&
                   before == SAGA_ST_RUNNING) {
            saga__machine_wait_timed_out(c, i);
        } else if (st->awaiting) {
            char msg[128];
            snprintf(msg, sizeof msg, "no reply within %lld ms",
                     (long long)s->def->steps[i].timeout_ms);
            saga__machine_transient(c, i, saga__machine_error_obj("timeout", msg), 0,
                                    SAGA_HIST_ATTEMPT_TIMED_OUT);
        } else {
            saga__machine_dispatch(c, i);
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
    saga__machine_ctx c = {s, ev, out, 0};
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
        for (int e = 0; e < s->steps[i].nelements && s->steps[i].elements; e++)
            s->steps[i].elements[e].dirty = 0;
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
        rc = saga__machine_on_operator(&c, reason);
        break;
    case SAGA_EV_SIGNAL:
        rc = saga__machine_on_signal(&c, reason);
        break;
    case SAGA_EV_CHILD_ENDED:
        rc = saga__machine_on_child_ended(&c, reason);
        break;
    case SAGA_EV_PARENT_COMPENSATE:
        rc = saga__machine_on_parent_compensate(&c, reason);
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
        saga__machine_update_wake(s);
    }
    return rc;
}
