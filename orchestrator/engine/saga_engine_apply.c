/* saga_engine_apply.c - one event applied to one saga inside the open
 * transaction: the machine's transition, the gate's word on each command
 * (breaker and bulkhead: a refused command is held, not sent), the
 * metrics held until commit, and the log lines of what was not applied. */
#include "saga_engine_state.h"
#include "saga_shared.h"

/* Log fields for a line about s (and a step attempt of it, step >= 0):
 * the saga, the step's name, the attempt, the trace and the span. */
static const saga_log_ctx *fields_of(saga__log_fields *f, const saga_state *s, int step,
                                     saga_phase phase, int attempt)
{
    char tp[SAGA_TRACEPARENT_LEN + 1] = "";
    memset(f, 0, sizeof *f);
    f->ctx.saga_id = s->id;
    if (step >= 0 && step < s->nsteps) {
        f->ctx.step = s->def->steps[step].name;
        f->ctx.attempt = attempt;
        if (attempt > 0)
            saga_tracing_step(s->traceparent, step, phase, attempt, tp, sizeof tp);
    }
    saga_tracing_ids(tp[0] ? tp : s->traceparent, f->trace_id, f->span_id);
    f->ctx.trace_id = f->trace_id[0] ? f->trace_id : NULL;
    f->ctx.span_id = f->span_id[0] ? f->span_id : NULL;
    return &f->ctx;
}

/* An ignored reply that contradicts the answer recorded for the same
 * attempt of an action: ok after failed, or failed after ok. */
static int conflicting(const saga_state *s, const saga_reply *r)
{
    const saga_step_state *st;
    if (r->phase != SAGA_PHASE_INVOKE || r->step < 0 || r->step >= s->nsteps)
        return 0;
    st = &s->steps[r->step];
    if (r->v == SAGA_PROTOCOL_VERSION_ELEMENTS) {
        /* An element's answer is compared with the element's. */
        if (st->elements == NULL || r->element < 0 || r->element >= st->nelements)
            return 0;
        st = &st->elements[r->element];
    }
    if (r->attempt != st->attempts)
        return 0;
    return (r->status == SAGA_REPLY_OK && st->status == SAGA_STEP_FAILED) ||
           (r->status == SAGA_REPLY_FAILED &&
            (st->status == SAGA_STEP_SUCCEEDED || st->status == SAGA_STEP_COMPENSATING ||
             st->status == SAGA_STEP_COMPENSATED));
}

/* Count and log an event the machine did not apply. */
static void not_applied(saga_engine *e, const saga_state *s, const saga_event *ev, int rc,
                        const char *reason)
{
    saga__log_fields lf;
    if (ev->kind != SAGA_EV_REPLY)
        return;
    if (rc == SAGA_IGNORED)
        e->pend.replies_ignored++;
    else
        e->pend.replies_rejected++;
    if (rc == SAGA_IGNORED && conflicting(s, ev->reply)) {
        /* Not routine: one of two answers to one attempt is not the
         * participant's (a forged reply got in first, or a participant
         * without a barrier answered twice). Said at warn, always. */
        const saga_reply *r = ev->reply;
        saga_tally_note(&e->tally, e->m.replies_dropped, 0, 1, "conflicting", NULL, NULL);
        saga__engine_warn_limited(
            &e->conflicting,
            "saga %s: step %d (%s) attempt %d was answered %s and now %s (reply %s): "
            "the second answer is ignored; one of them did not come from the "
            "participant's barrier (a forged reply? docs/SECURITY.md)",
            s->id, r->step, s->def->steps[r->step].name, r->attempt,
            s->steps[r->step].status == SAGA_STEP_FAILED ? "failed" : "ok",
            saga_reply_status_name(r->status), r->command_id ? r->command_id : "?");
        return;
    }
    saga_tally_note(&e->tally, e->m.replies_dropped, 0, 1,
                    rc == SAGA_IGNORED ? "duplicate" : "rejected", NULL, NULL);
    if (!saga_log_enabled(SAGA_LOG_DEBUG))
        return;
    /* Debug, not info: duplicates are routine under redelivery, and a line
     * per message would flood the log under load; they are counted. */
    saga_log_fields(
        SAGA_LOG_DEBUG,
        fields_of(&lf, s, ev->reply->step, ev->reply->phase, ev->reply->attempt),
        "saga %s: reply for step %d %s attempt %d %s: %s", s->id, ev->reply->step,
        saga_phase_name(ev->reply->phase), ev->reply->attempt,
        rc == SAGA_IGNORED ? "ignored (duplicate or stale)" : "rejected", reason);
}

/* The n-th SEND action of acts, or -1. */
static int nth_send(const saga_actions *acts, int n)
{
    for (int i = 0; i < acts->n; i++)
        if (acts->items[i].kind == SAGA_ACT_SEND && n-- == 0)
            return i;
    return -1;
}

static const char *action_of(const saga_step_def *sd, saga_phase phase)
{
    return phase == SAGA_PHASE_COMPENSATE ? sd->compensation : sd->action;
}

/* Pass every command the transition of s wants to send through the gate
 * (held ones become waits: saga_machine_hold) and note what the
 * transition did for the metrics: commands dispatched and retried,
 * attempts timed out (also settled with the gate), sagas finished. */
int saga__engine_gate_and_count(saga_engine *e, saga_state *s, saga_actions *acts,
                                int64_t now, saga_error *err)
{
    int kept = 0, i;
    while ((i = nth_send(acts, kept)) >= 0) {
        const saga_action *a = &acts->items[i];
        const saga_step_def *sd = &s->def->steps[a->step];
        const char *phase = saga_phase_name(a->phase), *action = action_of(sd, a->phase);
        char cid[128];
        int64_t until = 0;
        saga_gate_verdict v;
        saga_command_id_format_element(cid, sizeof cid, s->id, a->step, a->phase,
                                       a->element);
        v = saga_gate_admit(e->gate, sd->service, cid, a->deadline, now, next_random(e),
                            &until);
        if (v == SAGA_GATE_SEND) {
            saga_tally_note(&e->tally, e->m.steps_dispatched, 0, 1, sd->service, action,
                            phase);
            if (a->attempt > 1)
                saga_tally_note(&e->tally, e->m.steps_retried, 0, 1, sd->service, action,
                                phase);
            kept++;
            continue;
        }
        {
            int breaker = v == SAGA_GATE_HOLD_BREAKER;
            saga_history_kind why = SAGA_HIST_NONE;
            json_t *detail = NULL;
            int rc;
            saga_tally_note(&e->tally, e->m.commands_held, 0, 1, sd->service,
                            breaker ? "breaker" : "bulkhead", NULL);
            if (!breaker)
                saga_gate_note_held(e->gate, sd->service, s->id, until);
            if (breaker) {
                /* Once per cool-down per saga: worth a history line. Bulkhead
                 * holds repeat every second and are only counted. */
                why = a->phase == SAGA_PHASE_COMPENSATE ? SAGA_HIST_COMPENSATION_HELD
                                                        : SAGA_HIST_STEP_HELD;
                detail = json_pack("{s:s}", "reason", "circuit breaker open");
            }
            rc = saga_machine_hold(s, acts, i, until, why, detail);
            if (rc == SAGA_ENOMEM)
                return saga__error_set(err, rc, "out of memory holding a command");
            if (rc != SAGA_OK)
                return saga__error_set(err, rc, "saga %s: cannot hold step %d", s->id,
                                       a->step);
        }
    }
    for (i = 0; i < acts->n; i++) {
        const saga_action *a = &acts->items[i];
        if (a->kind != SAGA_ACT_HISTORY)
            continue;
        /* The metrics follow the history's kinds. */
        if (a->what == SAGA_HIST_ATTEMPT_TIMED_OUT && a->step >= 0) {
            const saga_step_def *sd = &s->def->steps[a->step];
            char cid[128];
            json_t *el = json_object_get(a->detail, "element");
            saga_command_id_format_element(
                cid, sizeof cid, s->id, a->step, a->phase,
                json_is_integer(el) ? (int)json_integer_value(el) : -1);
            saga_gate_settle(e->gate, sd->service, cid, SAGA_GATE_TIMEOUT, now);
            saga_tally_note(&e->tally, e->m.step_timeouts, 0, 1, sd->service,
                            action_of(sd, a->phase), saga_phase_name(a->phase));
        } else if (a->what == SAGA_HIST_SAGA_COMPLETED) {
            saga_tally_note(&e->tally, e->m.sagas_finished, 0, 1, s->def->name,
                            "completed", NULL);
            /* Between two counts of the finished sagas (every
             * FINISHED_EVERY observe intervals) the gauge moves with what
             * this instance finished. */
            saga_tally_note(&e->tally, e->m.sagas_by_status, 0, 1, "completed", NULL,
                            NULL);
        } else if (a->what == SAGA_HIST_SAGA_COMPENSATED) {
            saga_tally_note(&e->tally, e->m.sagas_finished, 0, 1, s->def->name,
                            "compensated", NULL);
            saga_tally_note(&e->tally, e->m.sagas_by_status, 0, 1, "compensated", NULL,
                            NULL);
        } else if (a->what == SAGA_HIST_SAGA_FAILED) {
            saga_tally_note(&e->tally, e->m.sagas_finished, 0, 1, s->def->name, "failed",
                            NULL);
            saga__engine_note_failed(e, s, a);
        }
    }
    return SAGA_OK;
}

/* A reply was applied: it settles its command with the gate (the breaker
 * learns whether the service works; the bulkhead slot is freed) and
 * counts. latency < 0: not known. */
static void settle_reply(saga_engine *e, const saga_state *s, const saga_reply *r,
                         double latency, int64_t now)
{
    const saga_step_def *sd;
    if (r->step < 0 || r->step >= s->nsteps)
        return;
    sd = &s->def->steps[r->step];
    if (e->unsent) {
        /* The broker refused the command: the service never saw it. */
        saga_gate_settle(e->gate, sd->service, r->command_id, SAGA_GATE_UNSENT, now);
        return;
    }
    saga_gate_settle(e->gate, sd->service, r->command_id,
                     r->status == SAGA_REPLY_RETRY ? SAGA_GATE_RETRY : SAGA_GATE_ANSWERED,
                     now);
    if (r->status == SAGA_REPLY_OK || r->status == SAGA_REPLY_FAILED ||
        r->status == SAGA_REPLY_RETRY)
        saga_tally_note(&e->tally, e->m.replies, 0, 1, sd->service,
                        saga_reply_status_name(r->status), NULL);
    if (latency >= 0)
        saga_tally_note(&e->tally, e->m.step_latency, 1, latency, sd->service,
                        action_of(sd, r->phase), saga_phase_name(r->phase));
}

/* Apply ev to s (loaded in the open transaction) and record the change in
 * the batch. */
int saga__engine_apply_one(saga_engine *e, saga_state *s, saga_event *ev, saga_error *err)
{
    saga_actions acts = {0};
    const char *reason = NULL;
    double latency = -1;
    int rc;

    if (ev->kind == SAGA_EV_REPLY && ev->reply->step >= 0 &&
        ev->reply->step < s->nsteps) {
        /* Before the machine moves on: when was the answered attempt sent? */
        const saga_step_state *st = &s->steps[ev->reply->step];
        if (st->awaiting && st->attempts == ev->reply->attempt)
            latency = (double)(ev->now -
                               (st->due_at - s->def->steps[ev->reply->step].timeout_ms)) /
                      1000.0;
    }
    rc = saga_machine_apply(s, ev, &acts, &reason);
    if (rc == SAGA_APPLIED) {
        if (ev->kind == SAGA_EV_REPLY)
            settle_reply(e, s, ev->reply, latency, ev->now);
        rc = saga__engine_gate_and_count(e, s, &acts, ev->now, err);
        if (rc == SAGA_OK)
            rc = saga_batch_add(e->batch, s, &acts, 0, err);
        e->batch_events++;
        if (ev->kind == SAGA_EV_REPLY && e->unsent)
            e->pend.commands_refused++;
        else if (ev->kind == SAGA_EV_REPLY)
            e->pend.replies_applied++;
        else
            e->pend.timers_fired++;
        if (saga_log_enabled(SAGA_LOG_DEBUG)) {
            saga__log_fields lf;
            int c = s->cursor >= 0 && s->cursor < s->nsteps ? s->cursor : -1;
            saga_log_fields(
                SAGA_LOG_DEBUG,
                fields_of(&lf, s, c,
                          s->status == SAGA_ST_COMPENSATING ? SAGA_PHASE_COMPENSATE
                                                            : SAGA_PHASE_INVOKE,
                          c >= 0 ? s->steps[c].attempts : 0),
                "saga %s: %s (step %d)", s->id, saga_status_name(s->status), s->cursor);
        }
    } else if (rc == SAGA_ENOMEM) {
        rc = saga__error_set(err, SAGA_ENOMEM, "out of memory applying an event");
    } else {
        not_applied(e, s, ev, rc, reason);
        rc = SAGA_OK;
    }
    saga_actions_clear(&acts);
    return rc;
}
