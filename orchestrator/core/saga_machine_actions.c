/* saga_machine_actions.c - what the machine emits: the actions list
 * (grown as needed; an allocation failure is remembered, not lost), history
 * records, error objects, and the end of a saga. Pure. */
#include "saga_machine_internal.h"
#include "saga_shared.h"

saga_action *saga__machine_push(saga__machine_ctx *c, saga_action_kind kind)
{
    saga_actions *a = c->out;
    if (saga__grow(&a->items, &a->cap, a->n + 1, sizeof *a->items, 8) != SAGA_OK) {
        c->oom = 1;
        return NULL;
    }
    memset(&a->items[a->n], 0, sizeof a->items[0]);
    a->items[a->n].kind = kind;
    return &a->items[a->n++];
}

/* Append a history event; detail is stolen. */
void saga__machine_history(saga__machine_ctx *c, saga_history_kind what, int step,
                           int attempt, json_t *detail)
{
    saga_action *a = saga__machine_push(c, SAGA_ACT_HISTORY);
    if (a == NULL) {
        json_decref(detail);
        return;
    }
    a->what = what;
    a->step = step;
    a->attempt = attempt;
    a->phase =
        c->s->status == SAGA_ST_COMPENSATING ? SAGA_PHASE_COMPENSATE : SAGA_PHASE_INVOKE;
    a->detail = detail;
}

json_t *saga__machine_error_obj(const char *code, const char *message)
{
    return json_pack("{s:s, s:s}", "code", code ? code : "error", "message",
                     message ? message : "");
}

void saga__machine_set_error(saga_step_state *st, json_t *err)
{
    json_decref(st->error);
    st->error = err;
}

void saga__machine_notify_parent(saga__machine_ctx *c)
{
    const saga_state *s = c->s;
    json_t *result, *steps;
    saga_action *a;
    if (s->parent_id[0] == '\0')
        return;
    result = json_pack("{s:s}", "saga_id", s->id);
    if (s->status == SAGA_ST_COMPLETED && (steps = json_object()) != NULL) {
        /* Its result: every step's output by name. */
        for (int i = 0; i < s->nsteps; i++)
            if (s->steps[i].output != NULL)
                json_object_set(steps, s->def->steps[i].name, s->steps[i].output);
        json_object_set_new(result, "steps", steps);
    }
    for (int i = 0; i < s->nsteps && s->status == SAGA_ST_COMPENSATED; i++)
        if (s->steps[i].status == SAGA_STEP_FAILED && s->steps[i].error != NULL) {
            /* What made it undo itself. */
            json_object_set(result, "error",
                            json_object_get(s->steps[i].error, "message"));
            break;
        }
    if ((a = saga__machine_push(c, SAGA_ACT_NOTIFY_PARENT)) == NULL) {
        json_decref(result);
        return;
    }
    a->step = -1;
    a->element = -1;
    a->payload = json_pack("{s:s, s:o}", "status",
                           s->status == SAGA_ST_COMPLETED     ? "completed"
                           : s->status == SAGA_ST_COMPENSATED ? "compensated"
                                                              : "resolved",
                           "result", result);
}

void saga__machine_finish(saga__machine_ctx *c, saga_status status,
                          saga_history_kind what)
{
    c->s->status = status;
    saga__machine_history(c, what, -1, 0, NULL);
    saga__machine_notify_parent(c);
}
