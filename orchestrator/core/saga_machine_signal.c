/* saga_machine_signal.c - wait steps: a signal that ends the wait (its
 * payload the step's output, or a verdict that fails the step), and a
 * wait whose time is up (the definition's default, or a failure). Pure. */
#include "saga_machine_internal.h"

/* Step i of the running stage succeeded with output (taken). */
void saga__machine_wait_succeeded(saga__machine_ctx *c, int i, json_t *output)
{
    saga_step_state *st = &c->s->steps[i];
    st->awaiting = 0;
    st->due_at = 0;
    st->finished_at = c->ev->now;
    st->status = SAGA_STEP_SUCCEEDED;
    st->dirty = 1;
    saga__machine_set_error(st, NULL);
    json_decref(st->output);
    st->output = output != NULL ? output : json_object();
    saga__machine_history(c, SAGA_HIST_STEP_SUCCEEDED, i, st->attempts,
                          json_incref(st->output));
    saga__machine_stage_done_or_wait(c);
}

/* Step i of the running stage failed definitely (nothing to undo of it):
 * the steps before are compensated, or, past the pivot, an operator
 * decides. err is taken. */
void saga__machine_wait_failed(saga__machine_ctx *c, int i, json_t *err)
{
    saga_state *s = c->s;
    saga_step_state *st = &s->steps[i];
    const saga_step_def *sd = &s->def->steps[i];
    st->awaiting = 0;
    st->due_at = 0;
    st->finished_at = c->ev->now;
    st->status = SAGA_STEP_FAILED;
    st->dirty = 1;
    saga__machine_set_error(st, json_incref(err));
    saga__machine_history(c, SAGA_HIST_STEP_FAILED, i, st->attempts, err);
    if (sd->forward_only && !sd->pivot) {
        s->status = SAGA_ST_FAILED;
        saga__machine_history(
            c, SAGA_HIST_SAGA_FAILED, i, st->attempts,
            json_pack("{s:s}", "reason",
                      "a step after the pivot failed; the saga cannot be compensated"));
        return;
    }
    saga__machine_fail_stage(c, i, "step_failed");
}

int saga__machine_on_signal(saga__machine_ctx *c, const char **reason)
{
    saga_state *s = c->s;
    const saga_event *ev = c->ev;
    int first, last;

    if (ev->signal == NULL || ev->signal[0] == '\0') {
        *reason = "a signal event without a signal name";
        return SAGA_REJECTED;
    }
    if (s->status != SAGA_ST_RUNNING) {
        *reason = "the saga is not running: it waits for no signal";
        return SAGA_IGNORED;
    }
    if (!saga__machine_cursor_consistent(s)) {
        *reason = "the saga's current step is in a state that awaits nothing";
        return SAGA_REJECTED;
    }
    saga__machine_stage_of(s, &first, &last);
    for (int i = first; i <= last; i++) {
        const saga_step_def *sd = &s->def->steps[i];
        saga_step_state *st = &s->steps[i];
        json_t *d;
        if (sd->wait_signal == NULL || strcmp(sd->wait_signal, ev->signal) != 0 ||
            st->status != SAGA_STEP_DISPATCHED)
            continue;
        d = json_pack("{s:s, s:s?, s:s}", "signal", ev->signal, "signal_id",
                      ev->signal_id, "verdict", ev->signal_failed ? "failed" : "ok");
        if (d != NULL && ev->signal_failed && ev->reason != NULL)
            json_object_set_new(d, "reason", json_string(ev->reason));
        saga__machine_history(c, SAGA_HIST_SIGNAL_RECEIVED, i, st->attempts, d);
        if (ev->signal_failed)
            saga__machine_wait_failed(
                c, i,
                saga__machine_error_obj("signal", ev->reason != NULL && ev->reason[0]
                                                      ? ev->reason
                                                      : "the signal's verdict: failed"));
        else
            saga__machine_wait_succeeded(
                c, i, ev->output != NULL ? json_deep_copy(ev->output) : NULL);
        return SAGA_APPLIED;
    }
    *reason = "no step of the saga waits for this signal now";
    return SAGA_IGNORED;
}

void saga__machine_wait_timed_out(saga__machine_ctx *c, int i)
{
    const saga_step_def *sd = &c->s->def->steps[i];
    saga__machine_history(c, SAGA_HIST_SIGNAL_TIMED_OUT, i, c->s->steps[i].attempts,
                          json_pack("{s:s, s:I, s:s}", "signal", sd->wait_signal,
                                    "timeout_ms", (json_int_t)sd->wait_timeout_ms, "then",
                                    sd->wait_default != NULL ? "default" : "failed"));
    if (sd->wait_default != NULL) {
        saga__machine_wait_succeeded(c, i, json_deep_copy(sd->wait_default));
    } else {
        char msg[160];
        snprintf(msg, sizeof msg, "signal \"%.100s\" did not come within %lld ms",
                 sd->wait_signal, (long long)sd->wait_timeout_ms);
        saga__machine_wait_failed(c, i, saga__machine_error_obj("signal_timeout", msg));
    }
}
