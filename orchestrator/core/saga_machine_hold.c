/* saga_machine_hold.c - a command the gate (breaker or bulkhead) refused
 * goes back into a wait: the step is not sent yet and uses no attempt,
 * and the saga wakes when the gate may let it go. Pure. */
#include "saga_machine_internal.h"

int saga_machine_hold(saga_state *s, saga_actions *acts, int index, int64_t until,
                      saga_history_kind why, json_t *detail)
{
    saga_action *a;
    saga_step_state *st;
    int step, attempt, element;

    if (s == NULL || acts == NULL || index < 0 || index >= acts->n ||
        acts->items[index].kind != SAGA_ACT_SEND) {
        json_decref(detail);
        return SAGA_EINVAL;
    }
    a = &acts->items[index];
    step = a->step;
    attempt = a->attempt;
    element = a->element;
    /* A fan-out's element is held as a step is. */
    st = step >= 0 && step < s->nsteps ? saga__fanout_unit(s, step, element) : NULL;
    if (st == NULL || st->attempts != attempt || !st->awaiting) {
        json_decref(detail);
        return SAGA_EINVAL;
    }
    /* Undo what dispatch() did: the attempt was never made. */
    st->attempts--;
    st->awaiting = 0;
    st->due_at = until;
    if (st->attempts == 0 && a->phase == SAGA_PHASE_INVOKE)
        st->started_at = 0;
    st->dirty = 1;
    json_decref(a->payload);
    memmove(a, a + 1, sizeof *a * (size_t)(acts->n - index - 1));
    acts->n--;
    /* ... and its history line, which would claim a dispatch. */
    for (int i = 0; i < acts->n; i++) {
        saga_action *h = &acts->items[i];
        if (h->kind == SAGA_ACT_HISTORY && h->step == step && h->attempt == attempt &&
            (h->what == SAGA_HIST_STEP_DISPATCHED ||
             h->what == SAGA_HIST_COMPENSATION_DISPATCHED) &&
            (element < 0 ||
             json_integer_value(json_object_get(h->detail, "element")) == element)) {
            if (why == SAGA_HIST_NONE) {
                json_decref(h->detail);
                memmove(h, h + 1, sizeof *h * (size_t)(acts->n - i - 1));
                acts->n--;
            } else {
                /* Said in its place: the saga waits, and why. */
                json_t *d =
                    json_is_object(h->detail) ? json_deep_copy(h->detail) : json_object();
                if (d == NULL) {
                    json_decref(detail);
                    return SAGA_ENOMEM;
                }
                if (detail != NULL)
                    json_object_update(d, detail);
                json_object_set_new(d, "until", json_integer(until));
                json_decref(h->detail);
                h->detail = d;
                h->what = why;
                h->attempt = attempt - 1;
            }
            break;
        }
    }
    json_decref(detail);
    saga__fanout_sync(s, step);
    saga__machine_update_wake(s);
    return SAGA_OK;
}
