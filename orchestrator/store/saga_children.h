/* saga_children.h - sagad's side of saga.saga_child (the links between
 * parent and child sagas, which the batch writer fills): claiming the
 * ends to tell parents and the undo requests to give children, and
 * marking each as done or to be tried again later. All inside the
 * caller's transaction; one connection per thread. */
#ifndef SAGA_CHILDREN_H
#define SAGA_CHILDREN_H

#include <libpq-fe.h>

#include "saga/error.h"

/* The columns of the claims' rows, by index. */
enum {
    SAGA_CH_CHILD_ID = 0,
    SAGA_CH_PARENT_ID,
    SAGA_CH_PARENT_STEP,
    SAGA_CH_STATUS, /* ended_status (NULL when the child has not ended) */
    SAGA_CH_RESULT, /* JSON text, NULL when none */
};

/* Up to limit children whose end their parent has not been told, oldest
 * first, locked (SKIP LOCKED: instances share them). *out: PQclear. */
int saga_children_claim_ended(PGconn *db, int limit, PGresult **out, saga_error *err);

/* Up to limit children a parent asked to undo that have not taken it. */
int saga_children_claim_undo(PGconn *db, int limit, PGresult **out, saga_error *err);

/* The parent was told (or cannot take it: it did not wait for it). */
int saga_children_told(PGconn *db, const char *child_id, saga_error *err);

/* The child took the undo request; status (NULL: unchanged) and result
 * (JSON text, NULL: unchanged) become its end, told to the parent anew
 * (a child that had ended undone, or cannot be undone). */
int saga_children_undo_taken(PGconn *db, const char *child_id, const char *status,
                             const char *result, saga_error *err);

/* Not now (the saga cannot be loaded, or the child must end first): not
 * claimed again for seconds. */
int saga_children_later(PGconn *db, const char *child_id, int seconds, saga_error *err);

/* Its delivery failed its transaction (its data): put off for seconds,
 * its failures counted; *failures the count now, for the caller to set it
 * aside at its limit (saga_children_give_up). */
int saga_children_failed(PGconn *db, const char *child_id, int seconds, int *failures,
                         saga_error *err);

/* Stop delivering it (an operator sees its dead letter): its end is
 * taken as told, its undo request as taken. */
int saga_children_give_up(PGconn *db, const char *child_id, int undo, saga_error *err);

#endif
