/* saga_batch_children.c - what a transition tells or asks of child sagas,
 * written like its commands in its transaction: a child to start (its row
 * in saga.saga_child and its start request, both keyed by the child's id,
 * so a second start is nothing), a child to undo, and, in a child, its
 * end for its parent. sagad delivers them (saga_children.h). */
#include "saga_batch_internal.h"
#include "saga_child.h"
#include "saga_shared.h"

int saga__batch_add_child_action(saga_batch *b, const saga_state *s,
                                 const saga_action *ac, saga_error *err)
{
    char child[SAGA_ID_LEN + 1];
    json_t *o = json_object(), *arr;
    if (o == NULL)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    json_object_set_new(o, "seq", json_integer(b->seq++));
    if (ac->kind == SAGA_ACT_NOTIFY_PARENT) {
        json_object_set_new(o, "child_id", json_string(s->id));
        json_object_set(o, "status", json_object_get(ac->payload, "status"));
        json_object_set(o, "result", json_object_get(ac->payload, "result"));
        arr = b->child_ends;
    } else {
        saga_child_id(s->id, ac->step, child);
        json_object_set_new(o, "child_id", json_string(child));
        json_object_set_new(o, "parent_id", json_string(s->id));
        json_object_set_new(o, "parent_step", json_integer(ac->step));
        json_object_set_new(o, "definition", json_string(s->def->steps[ac->step].child));
        if (ac->kind == SAGA_ACT_START_CHILD) {
            json_object_set(o, "input", ac->payload ? ac->payload : json_object());
            /* The child goes on in its parent's trace. */
            if (s->traceparent[0])
                json_object_set_new(o, "traceparent", json_string(s->traceparent));
            arr = b->child_starts;
        } else {
            arr = b->child_undos;
        }
    }
    if (json_array_append_new(arr, o) != 0)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    return SAGA_OK;
}
