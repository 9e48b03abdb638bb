/* saga_machine_units.c - what a saga runs, one unit at a time (a step, or
 * an element of a fan-out step), without moving the saga: where the
 * cursor is and whether it is consistent, the earliest timer, a retry
 * budget, a fan-out's elements (their timers summed up on the step, the
 * template context of one, those given up when their stage is, opened
 * again or settled by an operator). Below saga_machine_steps.c. Pure. */
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
int64_t saga_machine_next_wake(const saga_state *s)
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
    return w;
}

void saga__machine_update_wake(saga_state *s)
{
    s->wake_at = saga_machine_next_wake(s);
}

static int idle_with_due(const saga_step_state *u)
{
    return u->due_at > 0 && !u->awaiting &&
           (u->status == SAGA_STEP_DISPATCHED || u->status == SAGA_STEP_COMPENSATING);
}

int saga_machine_wake_is_exact(const saga_state *s)
{
    for (int i = 0; i < s->nsteps; i++) {
        const saga_step_state *st = &s->steps[i];
        if (idle_with_due(st))
            return 1;
        for (int k = 0; k < st->nelements; k++)
            if (idle_with_due(&st->elements[k]))
                return 1;
    }
    return 0;
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

/* detail (taken) with "element": e when e >= 0 (a copy: detail may be
 * shared); NULL detail gives {"element": e}. */
json_t *saga__machine_el(json_t *detail, int e)
{
    json_t *d;
    if (e < 0)
        return detail;
    d = json_is_object(detail) ? json_deep_copy(detail) : json_object();
    json_decref(detail);
    if (d != NULL)
        json_object_set_new(d, "element", json_integer(e));
    return d;
}

int saga__machine_retry_later(saga__machine_ctx *c, int i, int e, saga_step_state *u,
                              json_t *err, int64_t retry_after, saga_history_kind what)
{
    const saga_step_def *sd = &c->s->def->steps[i];
    int compensate = u->status == SAGA_STEP_COMPENSATING;
    const saga_retry_policy *pol = compensate ? &sd->compensation_retry : &sd->retry;
    /* An action whose effect could not be undone is never given up on:
     * compensating the steps before it would leave that effect alone. */
    int unlimited = !compensate && (sd->forward_only || sd->irreversible);

    saga__machine_set_error(u, json_incref(err));
    u->dirty = 1;
    u->awaiting = 0;
    saga__machine_history(c, what, i, u->attempts, saga__machine_el(err, e));
    if (unlimited || u->attempts - u->attempt_base < pol->max_attempts) {
        int64_t delay = saga_backoff_ms(pol, u->attempts, c->ev->random);
        if (retry_after > delay)
            delay = retry_after;
        u->due_at = c->ev->now + delay;
        saga__machine_history(
            c, SAGA_HIST_RETRY_SCHEDULED, i, u->attempts,
            saga__machine_el(json_pack("{s:I, s:I}", "delay_ms", (json_int_t)delay, "at",
                                       (json_int_t)u->due_at),
                             e));
        return 1;
    }
    return 0;
}

/* An element whose effect exists or may exist: to be undone. */
int saga__fanout_to_undo(saga_step_status st)
{
    return st == SAGA_STEP_SUCCEEDED || st == SAGA_STEP_UNKNOWN ||
           st == SAGA_STEP_SKIPPED;
}

saga_step_state *saga__fanout_unit(saga_state *s, int step, int element)
{
    saga_step_state *st = &s->steps[step];
    if (element < 0)
        return st;
    if (st->elements == NULL || element >= st->nelements)
        return NULL;
    return &st->elements[element];
}

void saga__fanout_sync(saga_state *s, int i)
{
    saga_step_state *st = &s->steps[i];
    int64_t due = 0;
    int awaiting = 0;
    if (st->elements == NULL)
        return;
    for (int e = 0; e < st->nelements; e++) {
        const saga_step_state *el = &st->elements[e];
        if (el->due_at > 0 && (due == 0 || el->due_at < due))
            due = el->due_at;
        awaiting |= el->awaiting;
    }
    if (st->due_at != due || st->awaiting != awaiting) {
        st->due_at = due;
        st->awaiting = awaiting;
        st->dirty = 1;
    }
}

void saga__fanout_clear_timers(saga_state *s, int i)
{
    saga_step_state *st = &s->steps[i];
    for (int e = 0; e < st->nelements && st->elements != NULL; e++) {
        saga_step_state *el = &st->elements[e];
        if (el->awaiting || el->due_at) {
            el->awaiting = 0;
            el->due_at = 0;
            el->dirty = 1;
        }
    }
    saga__fanout_sync(s, i);
}

/* The template context of element e of step i: the saga's, with
 * "element" (null when the list no longer has it: its reference then
 * fails the element) and "index". */
json_t *saga__fanout_context(const saga_state *s, int i, int e)
{
    const char *ref = s->def->steps[i].for_each;
    json_t *ctx = saga_state_context(s), *el;
    const json_t *list;
    if (ctx == NULL)
        return NULL;
    list = saga_template_lookup(ctx, ref, strlen(ref));
    el = json_is_array(list) ? json_array_get(list, (size_t)e) : NULL;
    if (json_object_set_new(ctx, "element", el ? json_incref(el) : json_null()) != 0 ||
        json_object_set_new(ctx, "index", json_integer(e)) != 0) {
        json_decref(ctx);
        return NULL;
    }
    return ctx;
}

/* Element e's compensation failed for good: the saga is stuck. */
void saga__fanout_compensation_failed(saga__machine_ctx *c, int i, int e, const char *why)
{
    saga_state *s = c->s;
    saga_step_state *st = &s->steps[i], *el = &st->elements[e];
    el->status = SAGA_STEP_COMPENSATION_FAILED;
    el->awaiting = 0;
    el->due_at = 0;
    el->finished_at = c->ev->now;
    el->dirty = 1;
    st->status = SAGA_STEP_COMPENSATION_FAILED;
    st->finished_at = c->ev->now;
    st->dirty = 1;
    saga__machine_set_error(st, el->error ? json_incref(el->error) : NULL);
    s->status = SAGA_ST_FAILED;
    saga__fanout_clear_timers(s, i);
    saga__machine_history(c, SAGA_HIST_SAGA_FAILED, i, el->attempts,
                          json_pack("{s:s, s:i, s:i, s:O?}", "reason", why, "element", e,
                                    "attempts", el->attempts, "last_error", el->error));
}

void saga__fanout_abandon(saga__machine_ctx *c, int i)
{
    saga_step_state *st = &c->s->steps[i];
    if (c->s->def->steps[i].for_each == NULL || st->elements == NULL)
        return;
    for (int e = 0; e < st->nelements; e++) {
        saga_step_state *el = &st->elements[e];
        if (el->status != SAGA_STEP_DISPATCHED)
            continue;
        el->status = el->attempts > 0 ? SAGA_STEP_UNKNOWN : SAGA_STEP_PENDING;
        el->awaiting = 0;
        el->due_at = 0;
        el->dirty = 1;
    }
    saga__fanout_sync(c->s, i);
}

void saga__fanout_reopen(saga__machine_ctx *c, int i)
{
    saga_step_state *st = &c->s->steps[i];
    const saga_step_def *sd = &c->s->def->steps[i];
    if (sd->for_each == NULL || st->elements == NULL)
        return;
    for (int e = 0; e < st->nelements; e++) {
        saga_step_state *el = &st->elements[e];
        if (el->status == SAGA_STEP_COMPENSATION_FAILED)
            el->status = SAGA_STEP_COMPENSATING;
        else if (el->status == SAGA_STEP_FAILED && sd->forward_only)
            el->status = SAGA_STEP_DISPATCHED;
        else
            continue;
        el->dirty = 1;
    }
}

json_t *saga__fanout_skip(saga__machine_ctx *c, int i, int forward, const json_t *output)
{
    saga_step_state *st = &c->s->steps[i];
    json_t *list = NULL;

    if (c->s->def->steps[i].for_each == NULL || st->elements == NULL)
        return NULL;
    for (int e = 0; e < st->nelements; e++) {
        saga_step_state *el = &st->elements[e];
        saga_step_status es = el->status;
        if (forward
                ? es == SAGA_STEP_SUCCEEDED || es == SAGA_STEP_SKIPPED
                : es != SAGA_STEP_COMPENSATING && es != SAGA_STEP_COMPENSATION_FAILED &&
                      !saga__fanout_to_undo(es))
            continue;
        el->status = forward ? SAGA_STEP_SKIPPED : SAGA_STEP_COMPENSATED;
        el->awaiting = 0;
        el->due_at = 0;
        el->finished_at = c->ev->now;
        el->dirty = 1;
        saga__machine_set_error(el, NULL);
        if (forward) {
            json_decref(el->output);
            el->output = output ? json_deep_copy(output) : json_object();
        }
    }
    saga__fanout_sync(c->s, i);
    if (forward && (list = json_array()) != NULL)
        for (int e = 0; e < st->nelements; e++)
            json_array_append_new(list, st->elements[e].output
                                            ? json_incref(st->elements[e].output)
                                            : json_object());
    return list;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    default:
        return "a list";
    }
}

int saga__fanout_list_size(const saga_state *s, int i, char *msg, size_t size)
{
    const saga_step_def *sd = &s->def->steps[i];
    json_t *ctxj = saga_state_context(s);
    const json_t *list;
    int n = -1;

    if (ctxj == NULL)
        return -2;
    list = saga_template_lookup(ctxj, sd->for_each, strlen(sd->for_each));
    if (list == NULL)
        snprintf(msg, size, "\"${%.200s}\" names nothing in this saga", sd->for_each);
    else if (!json_is_array(list))
        snprintf(msg, size, "\"${%.200s}\" is %s, not a list", sd->for_each,
                 type_name(list));
    else if (json_array_size(list) > (size_t)sd->max_elements)
        snprintf(msg, size,
                 "\"${%.200s}\" has %zu elements; this step takes at most %d (its "
                 "max_elements)",
                 sd->for_each, json_array_size(list), sd->max_elements);
    else
        n = (int)json_array_size(list);
    json_decref(ctxj);
    return n;
}
