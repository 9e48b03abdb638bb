/* saga_attention.c - the console's reads: sagas needing attention,
 * counts, service health (see saga_attention.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga_attention.h"
#include "saga_pgerr.h"
#include "saga_shared.h"

/* $1 idle ms, $2 limit. Failed sagas, then active ones idle longer than
 * $1, each group from saga_status_created_idx (status, created_at): no
 * pass over finished sagas; progressed_at is filtered on the active ones
 * (it has no index: it changes at every transition, and an index on it
 * would cost every transition an entry in each of the table's indexes,
 * migrations/0024_cheaper_transitions.sql). The counts read the same
 * ranges. */
static const char attention_sql[] =
    "WITH cand AS (SELECT s.* FROM saga.saga s WHERE s.status = 'failed'"
    "  OR (s.status IN ('running', 'compensating')"
    "   AND s.progressed_at < now() - $1::bigint * interval '1 millisecond')),"
    " shown AS (SELECT * FROM cand ORDER BY (status = 'failed') DESC, progressed_at"
    "  LIMIT $2::int)"
    " SELECT json_build_object('older_than_ms', $1::bigint,"
    " 'sagas', coalesce((SELECT json_agg(json_build_object('id', s.id, 'name', s.name,"
    "  'version', s.version, 'status', s.status, 'business_key', s.business_key,"
    "  'step_index', st.idx, 'step', st.name, 'step_status', st.status,"
    "  'attempts', st.attempts, 'error', st.error, 'since', saga.iso(s.progressed_at),"
    "  'idle_seconds', round(extract(epoch FROM now() - s.progressed_at)::numeric, 0),"
    "  'last_event', (SELECT e.kind FROM saga.saga_event e WHERE e.saga_id = s.id"
    "   ORDER BY e.id DESC LIMIT 1),"
    /* Why the machine stopped it: a definite failure and retries that ran
     * out read alike in the step's row, not in this. */
    "  'failed_reason', CASE WHEN s.status = 'failed' THEN (SELECT e.detail->>'reason'"
    "   FROM saga.saga_event e WHERE e.saga_id = s.id AND e.kind = 'saga_failed'"
    "   ORDER BY e.id DESC LIMIT 1) END)"
    "  ORDER BY (s.status = 'failed') DESC, s.progressed_at)"
    "  FROM shown s LEFT JOIN saga.saga_step st ON st.saga_id = s.id"
    "   AND st.idx = s.cursor_step), '[]'::json),"
    " 'more', (SELECT count(*) FROM cand) > $2::int,"
    " 'counts', coalesce((SELECT json_agg(json_build_object('definition', name,"
    "  'failed', f, 'stalled', n - f) ORDER BY name) FROM (SELECT name, count(*) AS n,"
    "  count(*) FILTER (WHERE status = 'failed') AS f FROM cand GROUP BY name) c),"
    "  '[]'::json),"
    " 'oldest_stalled_seconds', (SELECT json_object_agg(x.status, coalesce("
    "  (SELECT extract(epoch FROM now() - min(s.progressed_at))::float8"
    "   FROM saga.saga s WHERE s.status = x.status), 0))"
    "  FROM unnest(ARRAY['running', 'compensating', 'failed']) x(status)))::text";

/* Counting a million sagas is one pass however it is asked: done once,
 * by (name, status), the totals summed from that. */
static const char counts_sql[] =
    "WITH c AS (SELECT name, status, count(*) AS n FROM saga.saga GROUP BY name, status)"
    " SELECT json_build_object("
    " 'by_status', coalesce((SELECT json_object_agg(status, n) FROM"
    "  (SELECT status, sum(n)::bigint AS n FROM c GROUP BY status) a), '{}'),"
    " 'by_definition', coalesce((SELECT json_object_agg(name, st ORDER BY name) FROM"
    "  (SELECT name, json_object_agg(status, n) AS st FROM c GROUP BY name) b), '{}'),"
    " 'started', json_build_object("
    "  'last_minute', (SELECT count(*) FROM saga.saga"
    "   WHERE created_at > now() - interval '1 minute'),"
    "  'last_hour', (SELECT count(*) FROM saga.saga"
    "   WHERE created_at > now() - interval '1 hour')),"
    " 'finished', json_build_object("
    "  'last_minute', (SELECT count(*) FROM saga.saga WHERE status IN"
    "   ('completed', 'compensated', 'resolved') AND ended_at > now() - interval"
    "   '1 minute'),"
    "  'last_hour', (SELECT count(*) FROM saga.saga WHERE status IN"
    "   ('completed', 'compensated', 'resolved') AND ended_at > now() - interval"
    "   '1 hour')))::text";

static const char services_sql[] =
    "SELECT coalesce(json_agg(json_build_object('service', service,"
    " 'instance', instance, 'breaker', breaker,"
    " 'consecutive_failures', consecutive_failures,"
    " 'open_until', saga.iso(open_until), 'opened_total', opened_total,"
    " 'in_flight', in_flight, 'max_in_flight', max_in_flight,"
    " 'held_breaker', held_breaker, 'held_bulkhead', held_bulkhead,"
    " 'reported_seconds_ago', round(extract(epoch FROM now() - updated_at)::numeric, 1))"
    " ORDER BY service, instance), '[]')::text FROM saga.service_health";

static int one_json(PGconn *db, const char *sql, int n, const char *const *p, char **json,
                    const char *what, saga_error *err)
{
    PGresult *r = PQexecParams(db, sql, n, NULL, p, NULL, NULL, 0);
    int rc = SAGA_OK;
    *json = NULL;
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        saga_pgerr_note(r);
        rc = saga__error_set(err, SAGA_EDB, "%s: %s", what, PQerrorMessage(db));
    } else if ((*json = strdup(PQgetvalue(r, 0, 0))) == NULL) {
        rc = saga__error_set(err, SAGA_ENOMEM, "out of memory");
    }
    PQclear(r);
    return rc;
}

int saga_read_attention(PGconn *db, int64_t older_ms, int limit, char **json,
                        saga_error *err)
{
    char ms[24], lim[16];
    const char *p[2] = {ms, lim};
    snprintf(ms, sizeof ms, "%lld", (long long)older_ms);
    snprintf(lim, sizeof lim, "%d", limit);
    return one_json(db, attention_sql, 2, p, json, "reading sagas that need attention",
                    err);
}

int saga_read_counts(PGconn *db, char **json, saga_error *err)
{
    return one_json(db, counts_sql, 0, NULL, json, "counting sagas", err);
}

int saga_read_service_health(PGconn *db, char **json, saga_error *err)
{
    return one_json(db, services_sql, 0, NULL, json, "reading service health", err);
}
