/* saga_machine_fanout.c - the events of a fan-out step ("for_each"): a
 * reply for one of its elements (checked against that element: its
 * command id, attempt and phase), its elements' timers, and an operator's
 * retry, which sends every element in flight again with a fresh budget.
 * How elements move is saga_machine_steps.c's. Pure. */
#include "saga/protocol.h"
#include "saga_machine_internal.h"

int saga__fanout_on_reply(saga__machine_ctx *c, const char **reason)
{
    saga_state *s = c->s;
    const saga_reply *r = c->ev->reply;
    const int i = r->step, compensate = s->status == SAGA_ST_COMPENSATING;
    saga_step_state *st = &s->steps[i], *el;
    char expect[160];

    if (r->v != SAGA_PROTOCOL_VERSION_ELEMENTS) {
        *reason = "a reply without an element for a fan-out step";
        return SAGA_IGNORED;
    }
    if (st->elements == NULL || r->element < 0 || r->element >= st->nelements) {
        *reason = "reply names an element the step does not have";
        return SAGA_REJECTED;
    }
    el = &st->elements[r->element];
    if (el->status != (compensate ? SAGA_STEP_COMPENSATING : SAGA_STEP_DISPATCHED)) {
        *reason = "reply for an element that is no longer outstanding";
        return SAGA_IGNORED;
    }
    saga_command_id_format_element(expect, sizeof expect, s->id, i, r->phase, r->element);
    if (r->command_id == NULL || strcmp(r->command_id, expect) != 0) {
        *reason = "reply command_id does not match the outstanding command";
        return SAGA_IGNORED;
    }
    if (r->attempt > el->attempts) {
        *reason = "reply for an attempt that was never sent";
        return SAGA_REJECTED;
    }
    if (r->status == SAGA_REPLY_RETRY && (r->attempt != el->attempts || !el->awaiting)) {
        *reason = "retry reply for an attempt that is no longer outstanding";
        return SAGA_IGNORED;
    }
    switch (r->status) {
    case SAGA_REPLY_OK:
        el->awaiting = 0;
        el->due_at = 0;
        el->finished_at = c->ev->now;
        el->dirty = 1;
        saga__machine_set_error(el, NULL);
        if (compensate) {
            el->status = SAGA_STEP_COMPENSATED;
            saga__machine_history(c, SAGA_HIST_STEP_COMPENSATED, i, r->attempt,
                                  json_pack("{s:i}", "element", r->element));
            saga__fanout_backward(c, i);
        } else {
            el->status = SAGA_STEP_SUCCEEDED;
            json_decref(el->output);
            el->output = r->output ? json_incref(r->output) : json_object();
            saga__machine_history(
                c, SAGA_HIST_STEP_SUCCEEDED, i, r->attempt,
                json_pack("{s:i, s:O}", "element", r->element, "output", el->output));
            saga__fanout_forward(c, i);
        }
        break;
    case SAGA_REPLY_FAILED: {
        json_t *err = saga__machine_error_obj(r->error_code, r->error_message);
        if (compensate) {
            el->dirty = 1;
            saga__machine_set_error(el, json_incref(err));
            saga__machine_history(c, SAGA_HIST_COMPENSATION_FAILED, i, r->attempt,
                                  saga__machine_el(err, r->element));
            saga__fanout_compensation_failed(c, i, r->element,
                                             "compensation failed definitively");
        } else {
            saga__fanout_element_failed(c, i, r->element, err);
        }
        break;
    }
    case SAGA_REPLY_RETRY:
        saga__fanout_transient(c, i, r->element,
                               saga__machine_error_obj(r->error_code, r->error_message),
                               r->retry_after, SAGA_HIST_ATTEMPT_FAILED);
        break;
    }
    saga__fanout_sync(s, i);
    return SAGA_APPLIED;
}

void saga__fanout_wake(saga__machine_ctx *c, int i)
{
    saga_state *s = c->s;
    saga_step_state *st = &s->steps[i];
    const saga_status before = s->status;
    const saga_step_status phase = st->status;
    const int64_t now = c->ev->now;

    for (int e = 0; e < st->nelements; e++) {
        saga_step_state *el = &st->elements[e];
        if (s->status != before || st->status != phase)
            break;
        if (el->due_at == 0 || now < el->due_at || el->status != phase)
            continue;
        if (el->awaiting) {
            char msg[128];
            snprintf(msg, sizeof msg, "no reply within %lld ms",
                     (long long)s->def->steps[i].timeout_ms);
            saga__fanout_transient(c, i, e, saga__machine_error_obj("timeout", msg), 0,
                                   SAGA_HIST_ATTEMPT_TIMED_OUT);
        } else {
            saga__fanout_dispatch(c, i, e);
        }
    }
    saga__fanout_sync(s, i);
}

void saga__fanout_retry(saga__machine_ctx *c, int i)
{
    saga_state *s = c->s;
    saga_step_state *st = &s->steps[i];
    const saga_status now = s->status;
    const saga_step_status phase = st->status;

    if (st->elements == NULL) {
        /* Its list never resolved: read it again. */
        if (phase == SAGA_STEP_DISPATCHED)
            saga__fanout_begin(c, i);
        return;
    }
    for (int e = 0; e < st->nelements && s->status == now && st->status == phase; e++) {
        saga_step_state *el = &st->elements[e];
        if (el->status != phase)
            continue;
        /* A fresh budget; attempt numbers go on (late replies stay
         * unambiguous). */
        el->attempt_base = el->attempts;
        el->awaiting = 0;
        el->dirty = 1;
        saga__fanout_dispatch(c, i, e);
    }
    if (s->status == now && st->status == phase)
        saga__fanout_fill(c, i);
    saga__fanout_sync(s, i);
}
