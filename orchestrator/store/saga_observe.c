/* Periodic gauges and the service-health table (see saga_observe.h). */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "saga_observe.h"
#include "saga_shared.h"

/* Active sagas: how many per status and how long the oldest has gone
 * without progress. The status filter in the subquery lets PostgreSQL
 * read only the active sagas (saga_status_created_idx), not the finished
 * ones; progressed_at has no index (see saga_attention.c). */
static const char active_sql[] =
    "SELECT s.status, count(x.status),"
    " coalesce(extract(epoch FROM now() - min(x.progressed_at)), 0)::float8,"
    " (SELECT count(*) FROM saga.outbox)"
    " FROM unnest(ARRAY['running', 'compensating', 'failed']) AS s(status)"
    " LEFT JOIN (SELECT status, progressed_at FROM saga.saga"
    "  WHERE status IN ('running', 'compensating', 'failed')) x ON x.status = s.status"
    " GROUP BY s.status";

/* Finished sagas per status: an index-only count over saga_status_created_idx, a
 * pass over the whole history, hence read less often (saga_observe.h). */
static const char finished_sql[] =
    "SELECT s.status, count(x.status)"
    " FROM unnest(ARRAY['completed', 'compensated', 'resolved']) AS s(status)"
    " LEFT JOIN saga.saga x ON x.status = s.status GROUP BY s.status";

/* Run one of the counting queries; NULL (err set) when it failed. */
static PGresult *counts(PGconn *db, const char *sql, const char *what, saga_error *err)
{
    PGresult *r = PQexec(db, sql);
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        return r;
    saga__error_set(err, SAGA_EDB, "%s: %s", what, PQerrorMessage(db));
    PQclear(r);
    return NULL;
}

int saga_observe_sagas(PGconn *db, int with_finished, const saga_std_metrics *m,
                       saga_error *err)
{
    PGresult *r = counts(db, active_sql, "counting sagas per status", err);
    if (r == NULL)
        return SAGA_EDB;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *status[] = {PQgetvalue(r, i, 0)};
        saga_metric_set(m->sagas_by_status, status, strtod(PQgetvalue(r, i, 1), NULL));
        saga_metric_set(m->oldest_stalled, status, strtod(PQgetvalue(r, i, 2), NULL));
        if (i == 0)
            saga_metric_set(m->outbox_pending, NULL, strtod(PQgetvalue(r, i, 3), NULL));
    }
    PQclear(r);
    if (!with_finished)
        return SAGA_OK;
    if ((r = counts(db, finished_sql, "counting finished sagas per status", err)) == NULL)
        return SAGA_EDB;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *status[] = {PQgetvalue(r, i, 0)};
        saga_metric_set(m->sagas_by_status, status, strtod(PQgetvalue(r, i, 1), NULL));
    }
    PQclear(r);
    return SAGA_OK;
}

static const char services_sql[] =
    "INSERT INTO saga.service_health AS h (instance, service, breaker,"
    " consecutive_failures, open_until, opened_total, in_flight, max_in_flight,"
    " held_breaker, held_bulkhead, updated_at)"
    " SELECT $1, service, breaker, failures,"
    "  CASE WHEN open_until > 0 THEN to_timestamp(open_until / 1000.0) END,"
    "  opened, in_flight, max_in_flight, held_breaker, held_bulkhead, now()"
    " FROM jsonb_to_recordset($2::jsonb) AS x(service text, breaker text, failures int,"
    "  open_until bigint, opened bigint, in_flight int, max_in_flight int,"
    "  held_breaker bigint, held_bulkhead bigint)"
    " ON CONFLICT (instance, service) DO UPDATE SET breaker = excluded.breaker,"
    "  consecutive_failures = excluded.consecutive_failures,"
    "  open_until = excluded.open_until, opened_total = excluded.opened_total,"
    "  in_flight = excluded.in_flight, max_in_flight = excluded.max_in_flight,"
    "  held_breaker = excluded.held_breaker, held_bulkhead = excluded.held_bulkhead,"
    "  updated_at = excluded.updated_at";

typedef struct visit_ctx {
    const saga_std_metrics *m;
    json_t *rows;
} visit_ctx;

static void visit(const char *service, const saga_gate_info *info, void *arg)
{
    visit_ctx *v = arg;
    static const saga_breaker_state states[] = {SAGA_BREAKER_CLOSED, SAGA_BREAKER_OPEN,
                                                SAGA_BREAKER_HALF_OPEN};
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
        const char *l[] = {service, saga_breaker_state_name(states[i])};
        saga_metric_set(v->m->breaker_state, l, info->breaker.state == states[i]);
    }
    if (info->limit > 0) {
        const char *l[] = {service};
        saga_metric_set(v->m->in_flight, l, info->in_flight);
    }
    json_array_append_new(
        v->rows,
        json_pack("{s:s, s:s, s:i, s:I, s:I, s:i, s:i, s:I, s:I}", "service", service,
                  "breaker", saga_breaker_state_name(info->breaker.state), "failures",
                  info->breaker.consecutive_failures, "open_until",
                  (json_int_t)(info->breaker.state == SAGA_BREAKER_OPEN
                                   ? info->breaker.open_until_ms
                                   : 0),
                  "opened", (json_int_t)info->breaker.opened_total, "in_flight",
                  info->in_flight, "max_in_flight", info->limit, "held_breaker",
                  (json_int_t)info->held_breaker, "held_bulkhead",
                  (json_int_t)info->held_bulkhead));
}

int saga_observe_services(PGconn *db, const char *instance, const saga_gate *g,
                          int64_t now_ms, const saga_std_metrics *m, saga_error *err)
{
    visit_ctx v = {m, json_array()};
    const char *p[2];
    char *text;
    PGresult *r;
    if (v.rows == NULL)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    saga_gate_foreach(g, now_ms, visit, &v);
    if (json_array_size(v.rows) == 0) {
        json_decref(v.rows);
        return SAGA_OK;
    }
    text = json_dumps(v.rows, JSON_COMPACT);
    json_decref(v.rows);
    if (text == NULL)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    p[0] = instance;
    p[1] = text;
    r = PQexecParams(db, services_sql, 2, NULL, p, NULL, NULL, 0);
    free(text);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        saga__error_set(err, SAGA_EDB, "publishing service health: %s",
                        PQerrorMessage(db));
        PQclear(r);
        return SAGA_EDB;
    }
    PQclear(r);
    return SAGA_OK;
}
