/* saga_batch_internal.h - what the batch's files share (not for callers:
 * saga_batch.h is the interface): the write batch's fields and the
 * pipeline calls. Calls go one way: saga_batch.c and saga_batch_load.c use
 * saga_batch_sql.c. */
#ifndef SAGA_BATCH_INTERNAL_H
#define SAGA_BATCH_INTERNAL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga_batch.h"
#include "saga_command.h"
#include "saga_pg.h"
#include "saga_pgerr.h"

/* ---- the write batch ---- */

struct saga_batch {
    char *actor, *prefix, *owner;
    int lease_s;
    int seq, count;
    json_t *sagas, *steps, *elements, *events, *outbox, *requests, *dead, *aside;
    json_t *child_starts, *child_undos, *child_ends; /* saga_batch_children.c */
};

/* ---- saga_batch_sql.c ---- */

int saga__batch_send_prepared(PGconn *db, const char *name, int n,
                              const char *const *params, saga_error *err);

int saga__batch_send_plain(PGconn *db, const char *sql, saga_error *err);

PGresult *saga__batch_next_result(PGconn *db, ExecStatusType want, const char *what,
                                  saga_error *err);

void saga__batch_end_pipeline(PGconn *db, int synced);

/* ---- saga_batch_children.c ---- */

/* The row a START_CHILD, COMPENSATE_CHILD or NOTIFY_PARENT action of s
 * stands for. */
int saga__batch_add_child_action(saga_batch *b, const saga_state *s,
                                 const saga_action *ac, saga_error *err);

/* ---- saga_batch_elements.c ---- */

/* The rows of fan-out step i's elements the last transition of s changed
 * (all of them for a saga created in this batch). */
int saga__batch_add_elements(saga_batch *b, const saga_state *s, int i, int created,
                             saga_error *err);

/* The elements of the loaded sagas states[0..n) (NULL ones skipped)
 * that have a fan-out under way, in the open transaction. */
int saga__batch_load_elements(PGconn *db, saga_state **states, int n, saga_error *err);

#endif
