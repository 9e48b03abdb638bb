/* saga_store.h - the store's calls besides the batch writer: definitions
 * (saga_store_defs.c), the outbox as the relay reads it (saga_outbox.c),
 * limits, timers moved earlier and running a statement (saga_store.c).
 * Sagas, steps, history and outbox rows are written by saga_batch.h. */
#ifndef SAGA_STORE_H
#define SAGA_STORE_H

#include <stdint.h>

#include <libpq-fe.h>

#include "saga/error.h"
#include "saga_definition.h"
#include "saga_machine.h"

/* ---- definitions ---- */

/* A cache of definitions by (name, version); owns them. */
typedef struct saga_defs saga_defs;

saga_defs *saga_defs_new(void);
void saga_defs_free(saga_defs *defs);

/* The version of the definition most recently registered or found by
 * saga_store_register_definition() (0 if none). */
int saga_defs_last_version(const saga_defs *defs);

/* Store def (its content digest decides the version: the same content is
 * the same version, changed content the next one); sets def->version and
 * takes ownership of def into defs. *created tells whether the version is new. */
int saga_store_register_definition(PGconn *db, saga_defs *defs, saga_definition *def,
                                   int *created, saga_error *err);

/* The rules of defs[which]'s child steps (saga_definition_check_children),
 * each child looked up among defs[0..n) (being deployed together) first,
 * then among the stored definitions (the latest version). Problems go to
 * problems; SAGA_EDEF when there are any, SAGA_EDB when the database
 * cannot be read (err). */
int saga_store_check_children(PGconn *db, saga_defs *cache, saga_definition *const *defs,
                              int n, int which, saga_def_problems *problems,
                              saga_error *err);

/* The definition name@version (version 0: the latest), from the cache or the
 * database. The result is owned by defs. SAGA_ENOTFOUND if none. */
int saga_store_get_definition(PGconn *db, saga_defs *defs, const char *name, int version,
                              const saga_definition **out, saga_error *err);

/* ---- the outbox ---- */

typedef struct saga_outbox_msg {
    int64_t id;
    char *topic;
    char key[SAGA_ID_LEN + 1];
    char *payload;
    char traceparent[SAGA_TRACEPARENT_LEN + 1]; /* "" when none */
} saga_outbox_msg;

typedef struct saga_outbox {
    int n, cap;
    saga_outbox_msg *items;
} saga_outbox;

void saga_outbox_clear(saga_outbox *o);

/* Append a message; takes ownership of payload (freed on failure too).
 * traceparent is copied (NULL or "": none). */
int saga_outbox_push(saga_outbox *o, int64_t id, const char *topic, const char *key,
                     char *payload, const char *traceparent);

/* Claim up to limit outbox rows, oldest first, appending them to out: rows
 * nobody holds, rows whose holder's lease ran out (an instance that died
 * before Kafka confirmed them) and, when mine is set, rows held by owner
 * (this instance before a restart). Claimed rows are held by owner for
 * lease_s seconds, so that several sagad do not send the same rows. Only
 * rows with an id above after are considered (a cursor for paging). */
int saga_store_outbox_claim(PGconn *db, const char *owner, int lease_s, int mine,
                            int64_t after, int limit, saga_outbox *out, saga_error *err);

/* Delete the rows with these ids (their delivery was confirmed). */
int saga_store_outbox_delete(PGconn *db, const int64_t *ids, int n, saga_error *err);

/* ---- sagas ---- */

typedef struct saga_store_opts {
    const char *topic_prefix; /* "saga." */
    const char *actor;        /* who caused the change: "sagad", "operator:NAME" */
} saga_store_opts;

/* A saga's rows (saga, steps, history, outbox) are written by one writer,
 * saga_batch.h, for sagad and sagactl alike. */

/* The limit name (max_input_bytes, max_output_bytes, max_definition_bytes)
 * from saga.limits into *out. SAGA_EDB when it cannot be read,
 * SAGA_ENOTFOUND when there is no such row; err says which. */
int saga_store_limit(PGconn *db, const char *name, int64_t *out, saga_error *err);

/* Run a statement without results (BEGIN, COMMIT, ...). */
int saga_store_exec(PGconn *db, const char *sql, saga_error *err);

/* Wake now the sagas ids[i] whose timer is still untils[i] (ms since the
 * epoch): commands held by a bulkhead whose service has a free slot
 * again. Sagas whose timer changed meanwhile are left alone. */
int saga_store_wake_early(PGconn *db, char (*ids)[37], const int64_t *untils, int n,
                          saga_error *err);

/* Milliseconds since the epoch, from the wall clock (the shell's job). */
int64_t saga_now_ms(void);

#endif
