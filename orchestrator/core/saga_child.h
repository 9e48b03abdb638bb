/* saga_child.h - child sagas' ids and outcomes, shared by the machine
 * (which names a child before it exists), the store and the engine.
 * Pure. */
#ifndef SAGA_CHILD_H
#define SAGA_CHILD_H

#include "saga/protocol.h"

/* The id of the saga that step `step` of saga parent starts: a
 * name-based UUID (version 5, RFC 9562) of "<parent>/<step>" in the
 * project's own namespace. The same step always names the same child, so
 * starting it again (a retry) cannot start a second one, and the parent's
 * history names it before it exists. Any thread. */
void saga_child_id(const char *parent, int step, char out[SAGA_ID_LEN + 1]);

/* How a child ended, as the parent is told (saga.saga_child.ended_status). */
typedef enum saga_child_end {
    SAGA_CHILD_COMPLETED = 0, /* every step succeeded: the parent step succeeds */
    SAGA_CHILD_COMPENSATED,   /* undone: the parent step fails (or, being undone, is) */
    SAGA_CHILD_RESOLVED,      /* closed by an operator: as compensated, said so */
    SAGA_CHILD_REJECTED,      /* never started (its start was refused) */
    SAGA_CHILD_UNCOMPENSABLE, /* the parent asked to undo it and it cannot be */
    SAGA_CHILD_END_COUNT
} saga_child_end;

const char *saga_child_end_name(saga_child_end e);
int saga_child_end_parse(const char *text, saga_child_end *out);

#endif
