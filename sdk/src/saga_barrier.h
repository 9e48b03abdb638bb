/* Internal: the participant's de-duplication barrier in its own PostgreSQL. */
#ifndef SAGA_BARRIER_H
#define SAGA_BARRIER_H

#include <jansson.h>
#include <libpq-fe.h>

#include "saga/protocol.h"

typedef enum saga__barrier_verdict {
    SAGA__BARRIER_PROCEED,   /* first delivery: run the handler */
    SAGA__BARRIER_DUPLICATE, /* seen before: answer with the cached reply */
    SAGA__BARRIER_NULL_COMP, /* compensation of an action that never ran */
    SAGA__BARRIER_HANGING,   /* action arriving after its compensation */
} saga__barrier_verdict;

/* Create the barrier table if missing (in the connection's search_path);
 * upgrade one made before 0.5.0 (no "element" column) in one transaction
 * when this role owns it, else SAGA_EDB naming
 * migrations/participant/barrier_element.sql. */
int saga__barrier_init(PGconn *db, saga_error *err);

/* The element of cmd the barrier keys its rows on: cmd->element for a
 * command of version 2 (an element of a fan-out step), else 0. */
int saga__barrier_element(const saga_command *cmd);

/* Prepare the barrier's statements on db: after connecting and after every
 * PQreset(). */
int saga__barrier_prepare(PGconn *db, saga_error *err);

/* The barrier rows of a group of commands sharing one transaction
 * (saga_participant_options.tx_commands), kept here and inserted together
 * just before the group commits: one statement for the group instead of
 * one per command. Rows pending here count as written for the group's
 * later commands (a duplicate, a compensation of an action in it). */
typedef struct saga__barrier_batch {
    json_t *rows; /* NULL or an array of rows as objects */
} saga__barrier_batch;

/* Insert b's rows (inside the group's transaction) and empty b.
 * *conflicts counts the rows another transaction had stored meanwhile (a
 * concurrent delivery of the same command): the caller must then roll the
 * whole group back, and its commands are consumed again. */
int saga__barrier_batch_flush(PGconn *db, saga__barrier_batch *b, int *conflicts,
                              saga_error *err);

/* Empty b without writing it (the group was rolled back). */
void saga__barrier_batch_clear(saga__barrier_batch *b);

/* Inside an open transaction: classify cmd by its barrier row (saga_id,
 * step, element, phase). An action's row is only read here: it is written
 * once, with its reply, by saga__barrier_record (one write per command,
 * not a claim and then an update). A compensation whose action never ran
 * claims the action's row ("blocked"), so that the action, arriving late,
 * is refused (HANGING); it looks at its own element's action only.
 * batch (NULL: none) holds the group's rows not inserted yet, looked at
 * first. On DUPLICATE *cached is the stored reply object (caller decrefs). */
int saga__barrier_enter(PGconn *db, const saga__barrier_batch *batch,
                        const saga_command *cmd, saga__barrier_verdict *verdict,
                        json_t **cached, saga_error *err);

/* Inside the same transaction, after the handler: store cmd's row with
 * the reply sent and the outcome word ("handled", "null_compensation").
 * reply is borrowed. *verdict is PROCEED when the row was written. When
 * another delivery of cmd (or, for an action, its compensation) stored
 * the row first, while the handler ran, nothing is written and *verdict
 * is DUPLICATE (*cached its reply, the caller decrefs) or HANGING: the
 * caller then undoes the handler's writes and answers as for that
 * verdict. Database effects stay once either way; only the handler ran
 * twice, which is why saga__barrier_enter reads first. With a batch the
 * row is added to it instead (PROCEED; a conflict shows when the batch is
 * flushed). */
int saga__barrier_record(PGconn *db, saga__barrier_batch *batch, const saga_command *cmd,
                         json_t *reply, const char *outcome,
                         saga__barrier_verdict *verdict, json_t **cached,
                         saga_error *err);

/* Run a statement without parameters; SAGA_EDB with the server's message. */
int saga__pg_exec(PGconn *db, const char *sql, saga_error *err);

#endif
