/* saga_signal.h - signals for wait steps (saga.saga_signal): sending one
 * (the HTTP API; libsaga's client writes the same row), and sagad's side:
 * claiming those it can deliver now, and closing each with its outcome.
 * One connection per thread. */
#ifndef SAGA_SIGNAL_H
#define SAGA_SIGNAL_H

#include <libpq-fe.h>

#include "saga/error.h"
#include "saga/protocol.h"

typedef enum saga_signal_outcome {
    SAGA_SIGNAL_ACCEPTED = 0, /* kept: delivered when the saga waits for it */
    SAGA_SIGNAL_DUPLICATE,    /* a signal with this id was sent before: absorbed */
    SAGA_SIGNAL_NO_SAGA,      /* no such saga (or not owner's) */
    SAGA_SIGNAL_NOT_RUNNING,  /* the saga has ended or is compensating: refused */
} saga_signal_outcome;

/* Send signal name (1-100 letters, digits, '_', '-', '.') to saga_id with
 * payload (JSON object text; NULL: {}), failed (a verdict that fails the
 * waiting step, with reason), as sent_by; signal_id (1-200 bytes) makes
 * sending again harmless (NULL: a new one). owner (NULL: anyone's) limits
 * it to the sagas that caller started. *out says what became of it,
 * status the saga's status (for NOT_RUNNING), id_out (may be NULL) the
 * signal's id (the one generated when signal_id was NULL, for the caller
 * to send again with). Wakes sagad (NOTIFY). SAGA_EDB on failure (nothing
 * kept). */
int saga_signal_send(PGconn *db, const char *saga_id, const char *name,
                     const char *signal_id, const char *payload, int failed,
                     const char *reason, const char *sent_by, const char *owner,
                     saga_signal_outcome *out, char status[32], char id_out[201],
                     saga_error *err);

/* The columns of saga_signal_claim's rows, by index. */
enum {
    SAGA_SIG_SAGA_ID = 0,
    SAGA_SIG_NAME,
    SAGA_SIG_ID,
    SAGA_SIG_PAYLOAD, /* JSON text */
    SAGA_SIG_FAILED,  /* "t" or "f" */
    SAGA_SIG_REASON,  /* NULL when none */
};

/* Inside an open transaction: up to limit signals sagad can act on now —
 * each for a saga whose running stage waits for it, or for a saga that
 * has ended (to close) — oldest first, locked (SKIP LOCKED: several sagad
 * share them). *out is the caller's (PQclear). */
int saga_signal_claim(PGconn *db, int limit, PGresult **out, saga_error *err);

/* Leave a claimed signal for seconds (its saga cannot be loaded now): not
 * claimed again before then (in the transaction). */
int saga_signal_defer(PGconn *db, const char *saga_id, const char *name,
                      const char *signal_id, int seconds, saga_error *err);

/* Close a claimed signal: delivered, or why not (in the transaction). */
int saga_signal_done(PGconn *db, const char *saga_id, const char *name,
                     const char *signal_id, const char *outcome, saga_error *err);

#endif
