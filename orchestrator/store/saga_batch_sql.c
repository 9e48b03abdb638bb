/* saga_batch_sql.c - the batch's SQL: its prepared statements, and the
 * libpq pipeline they are sent in (send, read each result in order, leave
 * the pipeline clean also after an error). */
#include "saga_batch_internal.h"
#include "saga_shared.h"

/* ---- statements ---- */

/* Times travel as ms since the epoch. The conversions are written out
 * rather than called as saga.ms()/saga.ts(): PostgreSQL does not inline
 * those, and calling them per row tripled the cost of a load. */

static const char load_sagas_sql[] =
    "SELECT id, name, version, status, cursor_step, input::text, (extract(epoch FROM "
    "created_at) * 1000)::bigint,"
    " (extract(epoch FROM updated_at) * 1000)::bigint, (extract(epoch FROM deadline_at) "
    "* 1000)::bigint, (extract(epoch FROM wake_at) * 1000)::bigint, traceparent,"
    " (extract(epoch FROM progressed_at) * 1000)::bigint, parent_id, parent_step"
    " FROM saga.saga WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE";

static const char load_steps_sql[] =
    "SELECT saga_id, idx, status, attempts, awaiting, (extract(epoch FROM due_at) * "
    "1000)::bigint,"
    " (extract(epoch FROM started_at) * 1000)::bigint, (extract(epoch FROM finished_at) "
    "* 1000)::bigint, output::text, error::text,"
    " attempt_base FROM saga.saga_step WHERE saga_id = ANY($1::uuid[])"
    " ORDER BY saga_id, idx";

static const char claim_due_sql[] =
    "SELECT id FROM (SELECT id FROM saga.saga WHERE wake_at <= now()"
    " ORDER BY wake_at LIMIT $1 FOR UPDATE SKIP LOCKED) c ORDER BY id";

/* A saga applied several times in one batch appears once per apply; the
 * last row (highest seq) is the state to keep. The timer is not moved
 * later while the stored one is still ahead (lazy): wake_at, an indexed
 * column, then rarely changes, so most transitions are HOT updates
 * (migrations/0024_cheaper_transitions.sql). The stored time is never
 * later than the saga's real one; an early wake finds nothing due and
 * sagad sets the exact time (saga_engine_timers.c). A row with lazy
 * false (a unit held or backing off, which the gate may wake early by
 * its exact time) is written exactly. ended_at: set when the saga
 * reaches a finished status, kept while it stays there. */
static const char update_sagas_sql[] =
    "UPDATE saga.saga AS s SET status = x.status, cursor_step = x.cursor_step,"
    " wake_at = CASE WHEN x.lazy AND x.wake_at IS NOT NULL AND s.wake_at > now()"
    "   AND s.wake_at <= to_timestamp(x.wake_at / 1000.0) THEN s.wake_at"
    "   ELSE to_timestamp(x.wake_at / 1000.0) END,"
    " updated_at = to_timestamp(x.updated_at / 1000.0),"
    " progressed_at = coalesce(to_timestamp(x.progressed_at / 1000.0), s.progressed_at),"
    " deadline_at = to_timestamp(x.deadline_at / 1000.0),"
    " ended_at = CASE WHEN x.status IN ('completed', 'compensated', 'resolved') THEN"
    "   CASE WHEN s.status = x.status THEN coalesce(s.ended_at,"
    "    to_timestamp(x.updated_at / 1000.0)) ELSE to_timestamp(x.updated_at / 1000.0) "
    "END"
    "   END"
    " FROM (SELECT DISTINCT ON (id) * FROM jsonb_to_recordset($1::jsonb)"
    "   AS r(seq int, id uuid, status text, cursor_step int, wake_at bigint,"
    "        updated_at bigint, progressed_at bigint, deadline_at bigint, lazy bool)"
    "   ORDER BY id, seq DESC) AS x"
    " WHERE s.id = x.id";

static const char upsert_steps_sql[] =
    "INSERT INTO saga.saga_step (saga_id, idx, name, status, attempts, attempt_base,"
    " awaiting, due_at, output, error, started_at, finished_at, waiting_for)"
    " SELECT saga_id, idx, name, status, attempts, attempt_base, awaiting,"
    " to_timestamp(due_at / 1000.0), output, error, to_timestamp(started_at / 1000.0), "
    "to_timestamp(finished_at / 1000.0), waiting_for"
    " FROM (SELECT DISTINCT ON (saga_id, idx) * FROM jsonb_to_recordset($1::jsonb)"
    "   AS r(seq int, saga_id uuid, idx int, name text, status text, attempts int,"
    "        attempt_base int, awaiting bool, due_at bigint, output jsonb, error jsonb,"
    "        started_at bigint, finished_at bigint, waiting_for text)"
    "   ORDER BY saga_id, idx, seq DESC) AS x"
    " ON CONFLICT (saga_id, idx) DO UPDATE SET status = EXCLUDED.status,"
    " attempts = EXCLUDED.attempts, attempt_base = EXCLUDED.attempt_base,"
    " awaiting = EXCLUDED.awaiting, due_at = EXCLUDED.due_at, output = EXCLUDED.output,"
    " error = EXCLUDED.error, started_at = EXCLUDED.started_at,"
    " finished_at = EXCLUDED.finished_at, waiting_for = EXCLUDED.waiting_for";

static const char upsert_elements_sql[] =
    "INSERT INTO saga.saga_element (saga_id, step, idx, status, attempts, attempt_base,"
    " awaiting, due_at, output, error, started_at, finished_at)"
    " SELECT saga_id, step, idx, status, attempts, attempt_base, awaiting,"
    " to_timestamp(due_at / 1000.0), output, error, to_timestamp(started_at / 1000.0),"
    " to_timestamp(finished_at / 1000.0)"
    " FROM (SELECT DISTINCT ON (saga_id, step, idx) * FROM jsonb_to_recordset($1::jsonb)"
    "   AS r(seq int, saga_id uuid, step int, idx int, status text, attempts int,"
    "        attempt_base int, awaiting bool, due_at bigint, output jsonb, error jsonb,"
    "        started_at bigint, finished_at bigint)"
    "   ORDER BY saga_id, step, idx, seq DESC) AS x"
    " ON CONFLICT (saga_id, step, idx) DO UPDATE SET status = EXCLUDED.status,"
    " attempts = EXCLUDED.attempts, attempt_base = EXCLUDED.attempt_base,"
    " awaiting = EXCLUDED.awaiting, due_at = EXCLUDED.due_at, output = EXCLUDED.output,"
    " error = EXCLUDED.error, started_at = EXCLUDED.started_at,"
    " finished_at = EXCLUDED.finished_at";

static const char load_elements_sql[] =
    "SELECT saga_id, step, idx, status, attempts, attempt_base, awaiting,"
    " (extract(epoch FROM due_at) * 1000)::bigint,"
    " (extract(epoch FROM started_at) * 1000)::bigint,"
    " (extract(epoch FROM finished_at) * 1000)::bigint, output::text, error::text"
    " FROM saga.saga_element WHERE saga_id = ANY($1::uuid[])"
    " ORDER BY saga_id, step, idx";

/* History ids follow the order the machine produced the events in. */
static const char insert_events_sql[] =
    "INSERT INTO saga.saga_event (saga_id, at, kind, step, phase, attempt, detail, actor)"
    " SELECT saga_id, to_timestamp(at / 1000.0), kind, step, phase, attempt, detail, "
    "actor"
    " FROM jsonb_to_recordset($1::jsonb) AS x(seq int, saga_id uuid, at bigint,"
    "   kind text, step int, phase text, attempt int, detail jsonb, actor text)"
    " ORDER BY seq";

static const char insert_outbox_sql[] =
    "INSERT INTO saga.outbox (saga_id, topic, msg_key, payload, traceparent, claimed_by,"
    " claimed_until)"
    " SELECT saga_id, topic, msg_key, payload, traceparent, $2::text,"
    " CASE WHEN $2::text IS NULL THEN NULL ELSE now() + make_interval(secs => $3::int) "
    "END"
    " FROM jsonb_to_recordset($1::jsonb) AS x(seq int, saga_id uuid, topic text,"
    "   msg_key text, payload text, traceparent text) ORDER BY seq"
    " RETURNING id, topic, msg_key, payload, traceparent";

/* A child's start request refused: its parent is told (saga_child). */
static const char finish_requests_sql[] =
    "WITH q AS (UPDATE saga.start_request AS q SET processed_at = now(), error = x.error"
    " FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, error text) WHERE q.id = x.id"
    " RETURNING q.id, q.error, q.parent_id)"
    " UPDATE saga.saga_child AS c SET ended_status = 'rejected',"
    " result = jsonb_build_object('error', q.error), ended_at = now(), notified_at = NULL"
    " FROM q WHERE c.child_id = q.id AND q.error IS NOT NULL AND q.parent_id IS NOT NULL";

/* A child to start: its link, and its start request (the same id: a
 * second start is nothing; one of a child that ended tells the parent
 * again, which waits for it anew). It runs in its parent's trace, under
 * its parent's business key, as started by whoever started the parent
 * (who may then follow it, as its own). */
static const char start_children_sql[] =
    "WITH x AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS r(seq int, child_id uuid,"
    "   parent_id uuid, parent_step int, definition text, input jsonb, traceparent "
    "text)),"
    " c AS (INSERT INTO saga.saga_child (child_id, parent_id, parent_step, definition)"
    "   SELECT child_id, parent_id, parent_step, definition FROM x ORDER BY seq"
    "   ON CONFLICT (child_id) DO UPDATE SET notified_at = NULL"
    "   WHERE saga.saga_child.ended_at IS NOT NULL)"
    " INSERT INTO saga.start_request (id, name, input, traceparent, business_key,"
    " parent_id, parent_step, requested_by)"
    " SELECT x.child_id, x.definition, x.input, x.traceparent, p.business_key,"
    " x.parent_id, x.parent_step, coalesce(p.started_by, current_user)"
    " FROM x LEFT JOIN saga.saga p ON p.id = x.parent_id"
    " ORDER BY x.seq ON CONFLICT (id) DO NOTHING";

/* A child to undo. A step whose child never existed (an operator skipped
 * it before) gets a link that says so: undone, nothing to do. */
static const char undo_children_sql[] =
    "INSERT INTO saga.saga_child (child_id, parent_id, parent_step, definition,"
    " compensate_at, ended_status, result, ended_at)"
    " SELECT child_id, parent_id, parent_step, definition, now(), 'compensated',"
    " '{\"never_started\": true}', now()"
    " FROM jsonb_to_recordset($1::jsonb) AS x(seq int, child_id uuid, parent_id uuid,"
    "   parent_step int, definition text) ORDER BY seq"
    " ON CONFLICT (child_id) DO UPDATE SET compensate_at = now(),"
    " compensate_done_at = NULL, retry_at = NULL";

/* A child ended: its parent is to be told (again, if it was before). */
static const char end_children_sql[] =
    "UPDATE saga.saga_child AS c SET ended_status = x.status, result = x.result,"
    " ended_at = now(), notified_at = NULL, retry_at = NULL"
    " FROM (SELECT DISTINCT ON (child_id) * FROM jsonb_to_recordset($1::jsonb)"
    "   AS r(seq int, child_id uuid, status text, result jsonb)"
    "   ORDER BY child_id, seq DESC) AS x WHERE c.child_id = x.child_id";

static const char insert_sagas_sql[] =
    "INSERT INTO saga.saga (id, name, version, status, cursor_step, input,"
    " idempotency_key, deadline_at, wake_at, created_at, updated_at, progressed_at,"
    " traceparent, started_by, business_key, parent_id, parent_step, ended_at)"
    " SELECT id, name, version, status, cursor_step, input, idempotency_key,"
    " to_timestamp(deadline_at / 1000.0), to_timestamp(wake_at / 1000.0), "
    "to_timestamp(created_at / 1000.0), to_timestamp(created_at / 1000.0),"
    " to_timestamp(created_at / 1000.0), traceparent, coalesce(started_by, current_user),"
    " business_key, parent_id, parent_step,"
    " CASE WHEN status IN ('completed', 'compensated', 'resolved')"
    "  THEN to_timestamp(created_at / 1000.0) END"
    " FROM jsonb_to_recordset($1::jsonb) AS x(seq int, id uuid, name text, "
    "version int,"
    "   status text, cursor_step int, input jsonb, idempotency_key text,"
    "   deadline_at bigint, wake_at bigint, created_at bigint, traceparent text,"
    "   started_by name, business_key text, parent_id uuid, parent_step int)"
    " ORDER BY seq"
    " ON CONFLICT (started_by, idempotency_key) DO NOTHING RETURNING id";

/* A message is kept whole up to 64 KiB; bytes travel as hex (a Kafka
 * message may hold NUL or bytes that are not UTF-8). A reply consumed
 * again after a rewind is set aside once. */
static const char insert_dead_sql[] =
    "INSERT INTO saga.dead_letter (source, topic, kafka_partition, kafka_offset, msg_key,"
    " ref, payload, payload_bytes, reason, attempts, created_by)"
    " SELECT source, topic, kafka_partition, kafka_offset, msg_key, ref,"
    " decode(payload, 'hex'), payload_bytes, reason, attempts, $2"
    " FROM jsonb_to_recordset($1::jsonb) AS x(seq int, source text, topic text,"
    "   kafka_partition int, kafka_offset bigint, msg_key text, ref text, payload text,"
    "   payload_bytes int, reason text, attempts int) ORDER BY seq"
    " ON CONFLICT (topic, kafka_partition, kafka_offset) WHERE kafka_offset IS NOT NULL"
    " DO NOTHING";

/* A saga whose timer fails every time it fires is taken off the timers
 * (an operator looks at it, repairs, and replays or retries it). */
static const char set_aside_timers_sql[] =
    "WITH x AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS r(seq int, id uuid,"
    "   kind text, reason text)),"
    " s AS (UPDATE saga.saga AS g SET wake_at = NULL, updated_at = now() FROM x"
    "   WHERE g.id = x.id RETURNING g.id, x.kind, x.reason, x.seq)"
    " INSERT INTO saga.saga_event (saga_id, at, kind, detail, actor)"
    " SELECT id, clock_timestamp(), kind, jsonb_build_object('reason', reason),"
    " $2 FROM s ORDER BY seq";

/* The sagas holding these (caller, key) pairs: a key is its caller's. */
static const char key_holders_sql[] =
    "SELECT s.idempotency_key, s.id, s.started_by FROM saga.saga s"
    " JOIN jsonb_to_recordset($1::jsonb) AS x(k text, caller name)"
    " ON s.idempotency_key = x.k AND s.started_by = coalesce(x.caller, current_user)";

static const struct {
    const char *name, *sql;
    int nparams;
} statements[] = {
    {"saga_load_sagas", load_sagas_sql, 1},
    {"saga_load_steps", load_steps_sql, 1},
    {"saga_claim_due", claim_due_sql, 1},
    {"saga_update_sagas", update_sagas_sql, 1},
    {"saga_upsert_steps", upsert_steps_sql, 1},
    {"saga_upsert_elements", upsert_elements_sql, 1},
    {"saga_load_elements", load_elements_sql, 1},
    {"saga_insert_events", insert_events_sql, 1},
    {"saga_insert_outbox", insert_outbox_sql, 3},
    {"saga_finish_requests", finish_requests_sql, 1},
    {"saga_start_children", start_children_sql, 1},
    {"saga_undo_children", undo_children_sql, 1},
    {"saga_end_children", end_children_sql, 1},
    {"saga_insert_sagas", insert_sagas_sql, 1},
    {"saga_key_holders", key_holders_sql, 1},
    {"saga_insert_dead", insert_dead_sql, 2},
    {"saga_set_aside_timers", set_aside_timers_sql, 2},
};

int saga_batch_prepare(PGconn *db, saga_error *err)
{
    /* Asked of the catalog, so that preparing twice on one connection is
     * harmless (PQprepare of an existing name is an error, and inside a
     * transaction one that aborts it). */
    PGresult *have = PQexec(db, "SELECT name FROM pg_prepared_statements");
    if (PQresultStatus(have) != PGRES_TUPLES_OK) {
        int rc = saga__error_set(err, SAGA_EDB, "reading the prepared statements: %s",
                                 PQerrorMessage(db));
        PQclear(have);
        return rc;
    }
    for (size_t i = 0; i < sizeof statements / sizeof statements[0]; i++) {
        PGresult *r;
        int ok, known = 0;
        for (int k = 0; k < PQntuples(have) && !known; k++)
            known = strcmp(PQgetvalue(have, k, 0), statements[i].name) == 0;
        if (known)
            continue;
        r = PQprepare(db, statements[i].name, statements[i].sql, statements[i].nparams,
                      NULL);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (!ok) {
            PQclear(have);
            if (!ok)
                return saga__error_set(err, SAGA_EDB, "preparing %s: %s",
                                       statements[i].name, PQerrorMessage(db));
        }
    }
    PQclear(have);
    return SAGA_OK;
}

/* ---- pipeline helpers ---- */

int saga__batch_send_prepared(PGconn *db, const char *name, int n,
                              const char *const *params, saga_error *err)
{
    if (PQsendQueryPrepared(db, name, n, params, NULL, NULL, 0) != 1)
        return saga__error_set(err, SAGA_EDB, "sending %s: %s", name, PQerrorMessage(db));
    return SAGA_OK;
}

int saga__batch_send_plain(PGconn *db, const char *sql, saga_error *err)
{
    if (PQsendQueryParams(db, sql, 0, NULL, NULL, NULL, NULL, 0) != 1)
        return saga__error_set(err, SAGA_EDB, "sending %s: %s", sql, PQerrorMessage(db));
    return SAGA_OK;
}

/* The result of the next statement of the pipeline (the caller PQclear()s
 * it), or NULL with err set when it failed. what names it for the error. */
PGresult *saga__batch_next_result(PGconn *db, ExecStatusType want, const char *what,
                                  saga_error *err)
{
    PGresult *r = PQgetResult(db), *extra;
    if (r == NULL) {
        saga__error_set(err, SAGA_EDB, "%s: no result: %s", what, PQerrorMessage(db));
        return NULL;
    }
    /* Each statement's results end with a NULL. */
    while ((extra = PQgetResult(db)) != NULL)
        PQclear(extra);
    if (PQresultStatus(r) != want) {
        if (PQresultStatus(r) != PGRES_PIPELINE_ABORTED)
            saga_pgerr_note(r);
        if (err != NULL && err->code == SAGA_OK)
            saga__error_set(err, SAGA_EDB, "%s: %s", what,
                            PQresultStatus(r) == PGRES_PIPELINE_ABORTED
                                ? "skipped after an earlier error"
                                : PQresultErrorMessage(r));
        PQclear(r);
        return NULL;
    }
    return r;
}

/* Read up to the pipeline's sync point and leave pipeline mode, whatever
 * state the results were in. synced: PQpipelineSync() was sent. */
void saga__batch_end_pipeline(PGconn *db, int synced)
{
    PGresult *r;
    if (!synced && PQpipelineSync(db) != 1) {
        PQexitPipelineMode(db);
        return;
    }
    for (;;) {
        r = PQgetResult(db);
        if (r == NULL) {
            if (PQstatus(db) != CONNECTION_OK)
                break;
            continue;
        }
        if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            break;
        }
        PQclear(r);
    }
    PQexitPipelineMode(db);
}
