/* saga_engine_commit.c - the end of a transaction: COMMIT the batch's
 * writes (saga_batch_commit), then let the gate, the metrics and the stats
 * count what it did, log the sagas that failed and the breakers that
 * opened or closed; or ROLLBACK and forget all of it. */
#include "saga_engine_state.h"
#include "saga_shared.h"

/* One warn line per saga that became failed in the transaction just
 * committed: it is stuck until an operator acts. */
static void log_failed(saga_engine *e)
{
    for (int i = 0; i < e->nfailed; i++) {
        const failed_note *f = &e->failed[i];
        saga__log_fields sf;
        memset(&sf, 0, sizeof sf);
        sf.ctx.saga_id = f->id;
        sf.ctx.step = f->step[0] ? f->step : NULL;
        sf.ctx.attempt = f->attempt;
        saga_tracing_ids(f->traceparent, sf.trace_id, sf.span_id);
        sf.ctx.trace_id = sf.trace_id[0] ? sf.trace_id : NULL;
        saga_log_fields(SAGA_LOG_WARN, &sf.ctx,
                        "saga %s failed at step %s: %s; an operator must act (sagactl "
                        "stuck)",
                        f->id, f->step[0] ? f->step : "?", f->reason);
    }
    e->nfailed = 0;
}

typedef struct breaker_look {
    saga_engine *e;
    int index;
} breaker_look;

static void look_at_breaker(const char *service, const saga_gate_info *info, void *arg)
{
    breaker_look *b = arg;
    int i = b->index++;
    int open = info->breaker.state != SAGA_BREAKER_CLOSED;
    if (i >= BREAKERS_SEEN)
        return;
    if (info->breaker.opened_total > b->e->breakers[i].opened)
        saga_log(SAGA_LOG_WARN,
                 "circuit breaker of service %s opened (%s): its commands wait %lld ms, "
                 "then one probe goes",
                 service,
                 b->e->breakers[i].open ? "its probe failed"
                                        : "transient failures in a row",
                 (long long)info->breaker.cooldown_ms);
    else if (!open && b->e->breakers[i].open)
        saga_log(SAGA_LOG_INFO,
                 "circuit breaker of service %s closed: its probe was answered, its "
                 "commands go out again",
                 service);
    b->e->breakers[i].open = open;
    b->e->breakers[i].opened = info->breaker.opened_total;
}

/* A line when a breaker opens (or re-opens after a failed probe) and when
 * it closes: once per cool-down at most, never per command. */
void saga__engine_log_breakers(saga_engine *e, int64_t now)
{
    breaker_look b = {e, 0};
    saga_gate_foreach(e->gate, now, look_at_breaker, &b);
}

/* Note that s became failed (a saga_failed history action a), for
 * log_failed() after the commit. Out of memory drops the line. */
void saga__engine_note_failed(saga_engine *e, const saga_state *s, const saga_action *a)
{
    failed_note *f;
    const char *reason = json_string_value(json_object_get(a->detail, "reason"));
    if (saga__grow(&e->failed, &e->capfailed, e->nfailed + 1, sizeof *e->failed, 16) !=
        SAGA_OK)
        return;
    f = &e->failed[e->nfailed++];
    memset(f, 0, sizeof *f);
    snprintf(f->id, sizeof f->id, "%s", s->id);
    snprintf(f->traceparent, sizeof f->traceparent, "%s", s->traceparent);
    if (a->step >= 0 && a->step < s->nsteps && s->def->steps[a->step].name != NULL)
        snprintf(f->step, sizeof f->step, "%s", s->def->steps[a->step].name);
    f->attempt = a->attempt;
    snprintf(f->reason, sizeof f->reason, "%s", reason ? reason : "stuck");
}

/* Undo the open transaction and forget what the batch recorded, the
 * gate's admissions and the metric updates. */
void saga__engine_rollback(saga_engine *e)
{
    saga_batch_reset(e->batch);
    saga_store_exec(e->db, "ROLLBACK", NULL);
    saga_gate_abort(e->gate, saga_now_ms());
    saga_tally_reset(&e->tally);
    memset(&e->pend, 0, sizeof e->pend);
    e->batch_events = 0;
    e->nfailed = 0;
}

/* Write the batch and COMMIT; on success the gate's admissions and the
 * metric updates count. The caller rolls back on failure. */
int saga__engine_commit_batch(saga_engine *e, saga_outbox *sent, saga_error *err)
{
    int64_t t0 = saga__mono_ns();
    int children = saga_batch_has_children(e->batch);
    int rc = saga_batch_commit(e->db, e->batch, sent, err);
    if (rc != SAGA_OK)
        return rc;
    /* A child to start, to undo, or a parent to tell: soon (the loop). */
    if (children)
        e->children_due = 1;
    saga_metric_observe(e->m.pg_commit, NULL, (double)(saga__mono_ns() - t0) / 1e9);
    saga_metric_observe(e->m.batch_size, NULL, e->batch_events);
    e->batch_events = 0;
    saga_gate_commit(e->gate, saga_now_ms());
    saga_tally_commit(&e->tally);
    e->stats.replies_applied += e->pend.replies_applied;
    e->stats.replies_ignored += e->pend.replies_ignored;
    e->stats.replies_rejected += e->pend.replies_rejected;
    e->stats.malformed += e->pend.malformed;
    e->stats.timers_fired += e->pend.timers_fired;
    e->stats.dead_letters += e->pend.dead_letters;
    e->stats.commands_refused += e->pend.commands_refused;
    memset(&e->pend, 0, sizeof e->pend);
    e->stats.transactions++;
    log_failed(e);
    saga__engine_log_breakers(e, saga_now_ms());
    return SAGA_OK;
}
