/* saga_machine_child.c - child steps' events: the end of a child saga
 * (completed: the step succeeds, its output the child's result;
 * compensated, rejected or resolved: it fails, with nothing of it left to
 * undo; while the step is being undone, the child's undoing is the
 * step's), and, in a child, its parent's request to undo it. Pure. */
#include "saga_child.h"
#include "saga_machine_internal.h"

/* Why the child's end fails the step going forward. */
static json_t *failure(const char *child, saga_child_end how, const json_t *result)
{
    char code[48], msg[600];
    const char *err = json_string_value(json_object_get(result, "error"));
    snprintf(code, sizeof code, "child_%s", saga_child_end_name(how));
    if (how == SAGA_CHILD_REJECTED)
        snprintf(msg, sizeof msg, "child saga %s was not started: %.500s", child,
                 err ? err : "its start was refused");
    else if (how == SAGA_CHILD_RESOLVED)
        snprintf(msg, sizeof msg, "child saga %s was closed by an operator", child);
    else
        snprintf(msg, sizeof msg, "child saga %s was compensated", child);
    return saga__machine_error_obj(code, msg);
}

int saga__machine_on_child_ended(saga__machine_ctx *c, const char **reason)
{
    saga_state *s = c->s;
    const saga_event *ev = c->ev;
    const int i = ev->step;
    const saga_child_end how = (saga_child_end)ev->child_end;
    char child[SAGA_ID_LEN + 1];
    saga_step_state *st;
    int first, last;

    if (i < 0 || i >= s->nsteps || s->def->steps[i].child == NULL) {
        *reason = "the step named is not a child step";
        return SAGA_REJECTED;
    }
    if ((unsigned)ev->child_end >= SAGA_CHILD_END_COUNT) {
        *reason = "a child's end of an unknown kind";
        return SAGA_REJECTED;
    }
    if (s->status != SAGA_ST_RUNNING && s->status != SAGA_ST_COMPENSATING) {
        *reason = "the saga is not running: it waits for no child";
        return SAGA_IGNORED;
    }
    if (!saga__machine_cursor_consistent(s)) {
        *reason = "the saga's current step is in a state that awaits nothing";
        return SAGA_REJECTED;
    }
    st = &s->steps[i];
    saga_child_id(s->id, i, child);
    if (s->status == SAGA_ST_RUNNING) {
        saga__machine_stage_of(s, &first, &last);
        if (i < first || i > last || st->status != SAGA_STEP_DISPATCHED) {
            *reason = "the saga does not wait for this child now";
            return SAGA_IGNORED;
        }
        if (how == SAGA_CHILD_UNCOMPENSABLE) {
            *reason = "the child cannot be undone, but nothing asked it to be";
            return SAGA_IGNORED;
        }
        saga__machine_history(c, SAGA_HIST_CHILD_ENDED, i, st->attempts,
                              json_pack("{s:s, s:s}", "child_id", child, "status",
                                        saga_child_end_name(how)));
        if (how == SAGA_CHILD_COMPLETED)
            saga__machine_wait_succeeded(
                c, i, ev->output != NULL ? json_deep_copy(ev->output) : NULL);
        else
            saga__machine_wait_failed(c, i, failure(child, how, ev->output));
        return SAGA_APPLIED;
    }
    if (s->cursor != i || st->status != SAGA_STEP_COMPENSATING) {
        *reason = "the saga is not undoing this child now";
        return SAGA_IGNORED;
    }
    if (how == SAGA_CHILD_COMPLETED) {
        *reason = "the child's completion, told again: it is being undone";
        return SAGA_IGNORED;
    }
    saga__machine_history(
        c, SAGA_HIST_CHILD_ENDED, i, st->attempts,
        json_pack("{s:s, s:s}", "child_id", child, "status", saga_child_end_name(how)));
    st->awaiting = 0;
    st->finished_at = ev->now;
    st->dirty = 1;
    if (how == SAGA_CHILD_UNCOMPENSABLE) {
        const char *why = json_string_value(json_object_get(ev->output, "error"));
        st->status = SAGA_STEP_COMPENSATION_FAILED;
        saga__machine_set_error(
            st, saga__machine_error_obj("child_uncompensable",
                                        why ? why : "the child saga cannot be undone"));
        s->status = SAGA_ST_FAILED;
        saga__machine_history(c, SAGA_HIST_SAGA_FAILED, i, st->attempts,
                              json_pack("{s:s, s:s}", "reason",
                                        "the child saga cannot be undone", "child_id",
                                        child));
        return SAGA_APPLIED;
    }
    /* Undone (or closed by hand, or never started): this step is. */
    st->status = SAGA_STEP_COMPENSATED;
    saga__machine_set_error(st, NULL);
    saga__machine_history(
        c, SAGA_HIST_STEP_COMPENSATED, i, st->attempts,
        json_pack("{s:s, s:s}", "child_id", child, "status", saga_child_end_name(how)));
    saga__machine_next_compensation(c, i - 1);
    return SAGA_APPLIED;
}

int saga__machine_on_parent_compensate(saga__machine_ctx *c, const char **reason)
{
    saga_state *s = c->s;
    json_t *d;

    if (s->parent_id[0] == '\0') {
        *reason = "not a child saga: no parent can undo it";
        return SAGA_REJECTED;
    }
    switch (s->status) {
    case SAGA_ST_COMPLETED:
        for (int k = 0; k < s->nsteps; k++)
            if (s->def->steps[k].pivot && s->steps[k].status != SAGA_STEP_NOT_RUN) {
                *reason = "it passed its pivot: what it did cannot be undone";
                return SAGA_REJECTED;
            }
        break;
    case SAGA_ST_RUNNING:
        if (!saga__machine_cursor_consistent(s)) {
            *reason = "the saga's current step is in an unexpected state";
            return SAGA_REJECTED;
        }
        if (saga__machine_past_return(s)) {
            *reason = "it is past its point of no return: it must end first";
            return SAGA_IGNORED;
        }
        break;
    case SAGA_ST_COMPENSATING:
        *reason = "it is being undone already";
        return SAGA_IGNORED;
    case SAGA_ST_FAILED:
        *reason = "it is stuck: an operator must act on it first";
        return SAGA_IGNORED;
    case SAGA_ST_NEW:
        *reason = "the saga has not started";
        return SAGA_REJECTED;
    default:
        *reason = "it has ended undone";
        return SAGA_IGNORED;
    }
    d = json_pack("{s:s, s:i}", "parent_id", s->parent_id, "parent_step", s->parent_step);
    saga__machine_history(c, SAGA_HIST_PARENT_COMPENSATION, -1, 0, d);
    if (s->status == SAGA_ST_RUNNING) {
        saga__machine_fail_stage(c, -1, "parent");
        return SAGA_APPLIED;
    }
    /* Completed: every step that succeeded is undone, last first. */
    s->status = SAGA_ST_COMPENSATING;
    saga__machine_history(c, SAGA_HIST_COMPENSATION_STARTED, s->nsteps - 1, 0,
                          json_pack("{s:s}", "reason", "parent"));
    saga__machine_next_compensation(c, s->nsteps - 1);
    return SAGA_APPLIED;
}
