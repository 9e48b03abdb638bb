/* saga_pg.h - small libpq helpers the store's files share: run a statement
 * and check its status (noting its SQLSTATE for saga_pgerr), integers as
 * text parameters, integers read from results. Internal to the store. */
#ifndef SAGA_PG_H
#define SAGA_PG_H

#include <stdint.h>

#include <libpq-fe.h>

#include "saga/error.h"

/* Run sql with n text parameters; the result when its status is want (the
 * caller's, PQclear), else NULL with err saying "what: the server's
 * message". */
PGresult *saga__pg_query(PGconn *db, const char *sql, int n, const char *const *params,
                         ExecStatusType want, const char *what, saga_error *err);

/* Text forms of values for parameters; NULL for "none". */
typedef struct saga__pg_num {
    char b[32];
} saga__pg_num;

/* v as text, in nb. */
const char *saga__pg_i64(saga__pg_num *nb, int64_t v);

/* v as text in nb when it is positive (a time in ms), else NULL. */
const char *saga__pg_ms_or_null(saga__pg_num *nb, int64_t v);

/* The integer at (row, col) of r; 0 when it is NULL. */
int64_t saga__pg_get_i64(PGresult *r, int row, int col);

#endif
