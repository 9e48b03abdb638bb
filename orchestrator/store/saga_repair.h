/* saga_repair.h - operator repairs (retry, compensate, skip, resolve) of
 * one saga or of every saga a filter matches, for sagactl and the HTTP
 * API alike: each saga is locked, the operator's event applied by the
 * state machine and what it changed written by the one writer
 * (saga_batch.h), so a repair is safe while sagad runs. Each call uses
 * only the connection it is given: one thread per connection. */
#ifndef SAGA_REPAIR_H
#define SAGA_REPAIR_H

#include <jansson.h>
#include <libpq-fe.h>

#include "saga/error.h"
#include "saga/protocol.h"
#include "saga_machine.h"
#include "saga_store.h"

/* Sagas repaired per transaction by saga_repair_matching. */
#define SAGA_REPAIR_BATCH 100

/* What to do, and who does it. */
typedef struct saga_repair_req {
    saga_event_kind kind;     /* SAGA_EV_OP_RETRY, _COMPENSATE, _SKIP or _RESOLVE */
    const char *actor;        /* the history's actor: "operator:<role>", "token:<name>" */
    const char *operator;     /* the operator named in the history's detail */
    const char *on_behalf_of; /* free text, NULL: none */
    const char *reason;       /* required */
    const char *step;         /* _SKIP: the step's name (the current one) */
    json_t *output;           /* _SKIP: its output (borrowed; NULL: {}) */
    const char *topic_prefix; /* of the commands written; NULL: "saga." */
} saga_repair_req;

typedef enum saga_repair_outcome {
    SAGA_REPAIR_DONE = 0,
    SAGA_REPAIR_REFUSED,   /* the state machine refused: why says why */
    SAGA_REPAIR_NOT_FOUND, /* no such saga */
} saga_repair_outcome;

/* What became of one saga. */
typedef struct saga_repair_result {
    char id[SAGA_ID_LEN + 1];
    saga_repair_outcome outcome;
    char why[256];        /* SAGA_REPAIR_REFUSED */
    char status[16];      /* the saga's status after it (or as it is, refused) */
    char step[128];       /* its current step's name */
    char step_status[16]; /* and that step's status */
    int commands_sent;    /* commands written for sagad to send */
} saga_repair_result;

/* Repair saga id (any case). *out says what became of it. SAGA_OK when
 * the repair was done, refused or the saga not found (see out->outcome);
 * SAGA_EDB (err) when the database failed: nothing was written then. */
int saga_repair_one(PGconn *db, const saga_repair_req *rq, const char *id,
                    saga_repair_result *out, saga_error *err);

/* Which sagas a bulk repair acts on. NULL or "" fields are not filtered
 * on; at least one must be given. */
typedef struct saga_repair_filter {
    const char *definition;   /* the definition's name */
    const char *status;       /* running, compensating, failed, ... */
    const char *step;         /* the name of the step the saga is at */
    const char *business_key; /* exactly this business key */
    const char *since;        /* created at or after (a timestamp PostgreSQL reads) */
    const char *older_than;   /* created before */
} saga_repair_filter;

/* How many sagas f matches now, into *count; up to nsample of their ids
 * (the lowest) into sample (nsample <= SAGA_REPAIR_BATCH), their number
 * into *nsampled. SAGA_EINVAL when f filters on nothing, SAGA_EDB. */
int saga_repair_count(PGconn *db, const saga_repair_filter *f, long long *count,
                      char (*sample)[SAGA_ID_LEN + 1], int nsample, int *nsampled,
                      saga_error *err);

/* Called for each saga a bulk repair met (refused ones included). */
typedef void (*saga_repair_each_fn)(void *arg, const saga_repair_result *r);

/* Repair up to limit sagas that f matches, SAGA_REPAIR_BATCH per
 * transaction, in id order (a saga the repair moves out of f is not met
 * again). each (may be NULL) hears of every saga met; *repaired counts
 * the repairs done, *met the sagas met, *more whether sagas f matches
 * remain beyond the limit. On SAGA_EDB the batches already committed stay. */
int saga_repair_matching(PGconn *db, const saga_repair_req *rq,
                         const saga_repair_filter *f, int limit, saga_repair_each_fn each,
                         void *arg, int *repaired, int *met, int *more, saga_error *err);

#endif
