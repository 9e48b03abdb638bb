/* Whose fault is a failed transaction: the data it wrote, or the server
 * and the connection? sagad sets a message aside only for the first (a
 * reply that fails alone every time); for the second it waits and tries
 * the same work again, so a database restart or a full disk never turns
 * good messages into dead letters.
 *
 * The SQLSTATE of the last failed result is kept per thread: the store
 * and batch modules note it where they find a result failed, the engine
 * reads it after the transaction. */
#ifndef SAGA_PGERR_H
#define SAGA_PGERR_H

#include <libpq-fe.h>

/* Remember r's SQLSTATE (r failed; NULL or no SQLSTATE: nothing kept). */
void saga_pgerr_note(const PGresult *r);

/* Forget it (before a new unit of work). */
void saga_pgerr_clear(void);

/* The SQLSTATE noted last since saga_pgerr_clear(), or "". */
const char *saga_pgerr_sqlstate(void);

/* After work on db failed with rc (a SAGA_E* code): 1 when the failure
 * comes from what was written or read (a data exception, a constraint, a
 * trigger's RAISE, a row the engine cannot read, a command it cannot
 * encode), 0 when it is the server's or the connection's (connection
 * lost, serialization failure or deadlock, out of disk or memory, the
 * server shutting down or cancelling, out of memory here). */
int saga_pgerr_blames_data(PGconn *db, int rc);

/* The rule behind it for one SQLSTATE ("" or NULL: none; then 1). Pure. */
int saga_pgerr_state_blames_data(const char *sqlstate);

#endif
