/* saga_pg.c - small libpq helpers the store's files share (see saga_pg.h). */
#include <stdio.h>
#include <stdlib.h>

#include "saga_pg.h"
#include "saga_pgerr.h"
#include "saga_shared.h"

PGresult *saga__pg_query(PGconn *db, const char *sql, int n, const char *const *params,
                         ExecStatusType want, const char *what, saga_error *err)
{
    PGresult *r = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != want) {
        saga_pgerr_note(r);
        saga__error_set(err, SAGA_EDB, "%s: %s", what, PQerrorMessage(db));
        PQclear(r);
        return NULL;
    }
    return r;
}

const char *saga__pg_i64(saga__pg_num *nb, int64_t v)
{
    snprintf(nb->b, sizeof nb->b, "%lld", (long long)v);
    return nb->b;
}

const char *saga__pg_ms_or_null(saga__pg_num *nb, int64_t v)
{
    return v > 0 ? saga__pg_i64(nb, v) : NULL;
}

int64_t saga__pg_get_i64(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}
