/* saga_outbox.c - the outbox as sagad's relay reads it: claim rows to send
 * (under a lease, so instances share them), delete the confirmed ones, and
 * the in-memory list of messages to produce. The rows are written by the
 * batch writer (saga_batch.c) in the transaction of their transition. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga_pg.h"
#include "saga_store.h"
#include "saga_shared.h"

/* ---- outbox ---- */

void saga_outbox_clear(saga_outbox *o)
{
    for (int i = 0; i < o->n; i++) {
        free(o->items[i].topic);
        free(o->items[i].payload);
    }
    free(o->items);
    memset(o, 0, sizeof *o);
}

/* Append a message; takes ownership of payload. */
int saga_outbox_push(saga_outbox *o, int64_t id, const char *topic, const char *key,
                     char *payload, const char *traceparent)
{
    saga_outbox_msg *m;
    if (saga__grow(&o->items, &o->cap, o->n + 1, sizeof *o->items, 16) != SAGA_OK) {
        free(payload);
        return SAGA_ENOMEM;
    }
    m = &o->items[o->n];
    m->id = id;
    m->topic = strdup(topic);
    snprintf(m->key, sizeof m->key, "%s", key);
    m->payload = payload;
    snprintf(m->traceparent, sizeof m->traceparent, "%s", traceparent ? traceparent : "");
    if (m->topic == NULL) {
        free(payload);
        return SAGA_ENOMEM;
    }
    o->n++;
    return SAGA_OK;
}

int saga_store_outbox_claim(PGconn *db, const char *owner, int lease_s, int mine,
                            int64_t after, int limit, saga_outbox *out, saga_error *err)
{
    char lbuf[16], sbuf[16], abuf[24];
    const char *p[5] = {owner, sbuf, lbuf, mine ? "t" : "f", abuf};
    PGresult *r;
    snprintf(lbuf, sizeof lbuf, "%d", limit);
    snprintf(sbuf, sizeof sbuf, "%d", lease_s);
    snprintf(abuf, sizeof abuf, "%lld", (long long)after);
    r = saga__pg_query(
        db,
        "WITH c AS (SELECT id FROM saga.outbox"
        "   WHERE id > $5::bigint AND (claimed_until IS NULL OR claimed_until < now()"
        "      OR ($4::bool AND claimed_by = $1))"
        "   ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)"
        " UPDATE saga.outbox o SET claimed_by = $1,"
        "   claimed_until = now() + make_interval(secs => $2::int)"
        " FROM c WHERE o.id = c.id"
        " RETURNING o.id, o.topic, o.msg_key, o.payload, o.traceparent",
        5, p, PGRES_TUPLES_OK, "claiming outbox rows", err);
    if (r == NULL)
        return SAGA_EDB;
    for (int i = 0; i < PQntuples(r); i++) {
        char *payload = strdup(PQgetvalue(r, i, 3));
        if (payload == NULL ||
            saga_outbox_push(out, saga__pg_get_i64(r, i, 0), PQgetvalue(r, i, 1),
                             PQgetvalue(r, i, 2), payload,
                             PQgetvalue(r, i, 4)) != SAGA_OK) {
            PQclear(r);
            return saga__error_set(err, SAGA_ENOMEM, "out of memory");
        }
    }
    PQclear(r);
    return SAGA_OK;
}

int saga_store_outbox_delete(PGconn *db, const int64_t *ids, int n, saga_error *err)
{
    size_t cap = (size_t)n * 21 + 3, len = 0;
    char *arr = malloc(cap);
    const char *p[1];
    PGresult *r;

    if (arr == NULL)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    arr[len++] = '{';
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(arr + len, cap - len, "%s%lld", i ? "," : "",
                                (long long)ids[i]);
    arr[len++] = '}';
    arr[len] = '\0';
    p[0] = arr;
    r = saga__pg_query(db, "DELETE FROM saga.outbox WHERE id = ANY($1::bigint[])", 1, p,
                       PGRES_COMMAND_OK, "deleting sent outbox rows", err);
    free(arr);
    if (r == NULL)
        return SAGA_EDB;
    PQclear(r);
    return SAGA_OK;
}
