/* saga_machine_operator.c - an operator's repairs as events of the machine
 * (retry, compensate, skip, resolve), each checked against the saga's
 * state and recorded in its history with who and why. Pure. */
#include "saga_machine_internal.h"

/* ---- operator commands ---- */

/* Who (the authenticated operator; the database stamps it again on
 * insert), for whom when said, and why. */
static json_t *op_detail(const saga_event *ev)
{
    json_t *d = json_pack("{s:s, s:s}", "operator", ev->actor ? ev->actor : "?", "reason",
                          ev->reason ? ev->reason : "");
    if (d != NULL && ev->on_behalf_of != NULL && ev->on_behalf_of[0] != '\0')
        json_object_set_new(d, "on_behalf_of", json_string(ev->on_behalf_of));
    return d;
}

static int on_op_retry(saga__machine_ctx *c, const char **reason)
{
    saga_state *s = c->s;
    saga_step_state *st = &s->steps[s->cursor];
    const saga_step_def *sd = &s->def->steps[s->cursor];

    if (s->status == SAGA_ST_FAILED && st->status == SAGA_STEP_COMPENSATION_FAILED) {
        s->status = SAGA_ST_COMPENSATING;
        st->status = SAGA_STEP_COMPENSATING;
        saga__fanout_reopen(c, s->cursor);
    } else if (s->status == SAGA_ST_FAILED && st->status == SAGA_STEP_FAILED &&
               sd->forward_only) {
        s->status = SAGA_ST_RUNNING;
        st->status = SAGA_STEP_DISPATCHED;
        saga__fanout_reopen(c, s->cursor);
    } else if (s->status == SAGA_ST_RUNNING || s->status == SAGA_ST_COMPENSATING) {
        if (!saga__machine_cursor_consistent(s)) {
            *reason = "the saga's current step is in a state that cannot be retried";
            return SAGA_REJECTED;
        }
    } else {
        *reason = s->status == SAGA_ST_FAILED ? "nothing to retry in this failed saga"
                                              : "the saga has ended";
        return SAGA_REJECTED;
    }
    saga__machine_history(c, SAGA_HIST_OPERATOR_RETRY, s->cursor, st->attempts,
                          op_detail(c->ev));
    /* A fresh budget; attempt numbers go on so late replies stay unambiguous.
     * Going forward, every step of the stage still waiting is re-sent. */
    {
        int first = s->cursor, last = s->cursor;
        const saga_status now = s->status;
        if (s->status == SAGA_ST_RUNNING)
            saga__machine_stage_of(s, &first, &last);
        for (int j = first; j <= last && s->status == now; j++) {
            saga_step_state *sj = &s->steps[j];
            if (sj->status != SAGA_STEP_DISPATCHED &&
                sj->status != SAGA_STEP_COMPENSATING)
                continue;
            if (s->def->steps[j].for_each != NULL) {
                saga__fanout_retry(c, j);
                continue;
            }
            sj->attempt_base = sj->attempts;
            sj->awaiting = 0;
            sj->dirty = 1;
            saga__machine_dispatch(c, j);
        }
    }
    return SAGA_APPLIED;
}

static int on_op_compensate(saga__machine_ctx *c, const char **reason)
{
    saga_state *s = c->s;

    if (s->status != SAGA_ST_RUNNING) {
        *reason = s->status == SAGA_ST_COMPENSATING
                      ? "the saga is already compensating"
                      : "only a running saga can be compensated";
        return SAGA_REJECTED;
    }
    if (!saga__machine_cursor_consistent(s)) {
        *reason = "the saga's current step is in an unexpected state";
        return SAGA_REJECTED;
    }
    if (saga__machine_past_return(s)) {
        *reason =
            "the saga is past its point of no return (a pivot, or an irreversible step "
            "in flight); it can only go forward: retry or skip";
        return SAGA_REJECTED;
    }
    saga__machine_history(c, SAGA_HIST_OPERATOR_COMPENSATE, s->cursor,
                          s->steps[s->cursor].attempts, op_detail(c->ev));
    saga__machine_fail_stage(c, -1, "operator");
    return SAGA_APPLIED;
}

static int on_op_skip(saga__machine_ctx *c, const char **reason)
{
    saga_state *s = c->s;
    saga_step_state *st;
    int forward, first = s->cursor, last = s->cursor;

    /* Going forward, any step of the running stage; else the current one. */
    if (s->status == SAGA_ST_RUNNING)
        saga__machine_stage_of(s, &first, &last);
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
    saga__machine_set_error(
        st, NULL); /* done by hand: what failed before is in the history */
    if (forward) {
        json_t *d = op_detail(c->ev);
        /* A fan-out's output is its elements' list, the skipped ones
         * given the operator's output. */
        json_t *list = saga__fanout_skip(c, c->ev->step, 1, c->ev->output);
        s->status = SAGA_ST_RUNNING;
        st->status = SAGA_STEP_SKIPPED;
        json_decref(st->output);
        st->output = list            ? list
                     : c->ev->output ? json_deep_copy(c->ev->output)
                                     : json_object();
        json_object_set(d, "output", st->output);
        saga__machine_history(c, SAGA_HIST_STEP_SKIPPED, c->ev->step, st->attempts, d);
        saga__machine_stage_done_or_wait(c);
    } else {
        json_decref(saga__fanout_skip(c, c->ev->step, 0, NULL));
        s->status = SAGA_ST_COMPENSATING;
        st->status = SAGA_STEP_COMPENSATED;
        saga__machine_history(c, SAGA_HIST_COMPENSATION_SKIPPED, s->cursor, st->attempts,
                              op_detail(c->ev));
        saga__machine_next_compensation(c, s->cursor - 1);
    }
    return SAGA_APPLIED;
}

static int on_op_resolve(saga__machine_ctx *c, const char **reason)
{
    if (c->s->status != SAGA_ST_FAILED) {
        *reason = "only a failed saga can be resolved";
        return SAGA_REJECTED;
    }
    c->s->status = SAGA_ST_RESOLVED;
    /* Nothing stays scheduled on a closed saga. */
    for (int i = 0; i < c->s->nsteps; i++) {
        saga__fanout_clear_timers(c->s, i);
        if (c->s->steps[i].awaiting || c->s->steps[i].due_at) {
            c->s->steps[i].awaiting = 0;
            c->s->steps[i].due_at = 0;
            c->s->steps[i].dirty = 1;
        }
    }
    saga__machine_history(c, SAGA_HIST_SAGA_RESOLVED, -1, 0, op_detail(c->ev));
    saga__machine_notify_parent(c);
    return SAGA_APPLIED;
}

int saga__machine_on_operator(saga__machine_ctx *c, const char **reason)
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
