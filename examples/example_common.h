/* Shared by the example participant services: command-line parsing, the
 * run loop with graceful stop, and small helpers for handlers. */
#ifndef EXAMPLE_COMMON_H
#define EXAMPLE_COMMON_H

#include <libpq-fe.h>

#include "saga/saga.h"

/* What a service declares: its name, its schema (created by schema_sql
 * before the participant starts) and its handlers. */
typedef struct example_handler {
    saga_phase phase;
    const char *name;
    saga_handler_fn fn;
    void *arg; /* handed to fn */
} example_handler;

typedef struct example_service {
    const char *service;    /* e.g. "payment" */
    const char *schema;     /* its PostgreSQL schema, e.g. "payment" */
    const char *schema_sql; /* CREATE ... IF NOT EXISTS statements, run in schema */
    const example_handler *handlers;
    int nhandlers;
    const char *program; /* how usage names it; default "<service>-service" */
} example_service;

/* Parse argv, create the schema, run the participant until SIGINT/SIGTERM.
 * Returns the process exit code. */
int example_main(const example_service *svc, int argc, char **argv);

/* The start of every handler: the test knobs (SAGA_EXAMPLE_FAIL_RATE,
 * SAGA_EXAMPLE_DELAY_MS, SAGA_EXAMPLE_SLOW_*: sleep and/or answer `retry`
 * without effect), then the command's row in <schema>.command_log, in the
 * handler's transaction. Returns 1 when the handler must return (result
 * already set: an injected retry, or the database's error as a retry). */
int example_begin(const saga_command *cmd, PGconn *db, saga_result *result);

/* A compensation that undoes by saga id, so it works when the action's
 * reply was lost or the action never ran: sql ($1 = the saga id) returns
 * what it gave back in its first column, or no row when there was
 * nothing to undo. Replies ok with {key: that value, or 0}. */
void example_undo(const saga_command *cmd, PGconn *db, saga_result *result,
                  const char *sql, const char *key);

/* Read payload fields; on a missing or mistyped field set a `bad_input`
 * failure naming it and return NULL / -1. */
const char *example_str(const saga_command *cmd, json_t *obj, const char *key,
                        saga_result *result);
long long example_int(const saga_command *cmd, json_t *obj, const char *key,
                      saga_result *result, int *ok);

/* Run a parameterised statement on the handler's connection. Returns the
 * result (caller PQclear()s) or NULL after setting a `retry` result with
 * the database's message. */
PGresult *example_sql(PGconn *db, saga_result *result, const char *sql, int n,
                      const char *const *params);

#endif
