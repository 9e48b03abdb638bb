/* saga_store.c - the store's connection-level calls: run a statement,
 * read a limit of saga.limits, wake sagas whose timer an event moved
 * earlier, and the wall clock the shell passes to the machine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga_pg.h"
#include "saga_pgerr.h"
#include "saga_shared.h"
#include "saga_store.h"

int64_t saga_now_ms(void)
{
    return saga__wall_ms();
}

int saga_store_exec(PGconn *db, const char *sql, saga_error *err)
{
    PGresult *r = PQexec(db, sql);
    int ok =
        PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok) {
        saga_pgerr_note(r);
        saga__error_set(err, SAGA_EDB, "%s: %s", sql, PQerrorMessage(db));
    }
    PQclear(r);
    return ok ? SAGA_OK : SAGA_EDB;
}

int saga_store_limit(PGconn *db, const char *name, int64_t *out, saga_error *err)
{
    const char *params[1] = {name};
    PGresult *r = saga__pg_query(db, "SELECT value FROM saga.limits WHERE name = $1", 1,
                                 params, PGRES_TUPLES_OK, "reading saga.limits", err);
    if (r == NULL)
        return SAGA_EDB;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return saga__error_set(err, SAGA_ENOTFOUND, "saga.limits has no %s", name);
    }
    *out = saga__pg_get_i64(r, 0, 0);
    PQclear(r);
    return SAGA_OK;
}

int saga_store_wake_early(PGconn *db, char (*ids)[37], const int64_t *untils, int n,
                          saga_error *err)
{
    size_t cap = (size_t)n * 40 + 3, ilen = 0, ulen = 0;
    char *iarr = malloc(cap), *uarr = malloc(cap);
    const char *p[2];
    PGresult *r;
    if (iarr == NULL || uarr == NULL) {
        free(iarr);
        free(uarr);
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    }
    iarr[ilen++] = '{';
    uarr[ulen++] = '{';
    for (int i = 0; i < n; i++) {
        ilen += (size_t)snprintf(iarr + ilen, cap - ilen, "%s%s", i ? "," : "", ids[i]);
        ulen += (size_t)snprintf(uarr + ulen, cap - ulen, "%s%lld", i ? "," : "",
                                 (long long)untils[i]);
    }
    memcpy(iarr + ilen, "}", 2);
    memcpy(uarr + ulen, "}", 2);
    p[0] = iarr;
    p[1] = uarr;
    /* Only sagas still waiting for that very hold: one that moved on has
     * another timer (or none), and waking it for nothing would spin. */
    r = saga__pg_query(db,
                       "UPDATE saga.saga s SET wake_at = now()"
                       " FROM unnest($1::uuid[], $2::bigint[]) AS x(id, until)"
                       " WHERE s.id = x.id AND s.wake_at > now()"
                       "   AND abs(extract(epoch FROM s.wake_at) * 1000 - x.until) < 2",
                       2, p, PGRES_COMMAND_OK, "waking held sagas", err);
    free(iarr);
    free(uarr);
    if (r == NULL)
        return SAGA_EDB;
    PQclear(r);
    return SAGA_OK;
}
