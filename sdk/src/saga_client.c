/* The client API: start requests in the orchestrator's database. */
#include <ctype.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "saga/client.h"
#include "saga/trace.h"
#include "saga_shared.h"

/* saga.limits max_input_bytes as migration 0011 sets it: what the client
 * believes until an input over it makes it read the table. */
#define DEFAULT_MAX_INPUT_BYTES 262144

struct saga_client {
    PGconn *db;
    int64_t max_input_bytes; /* the limit last read (or the default) */
};

int saga_client_new(const char *db_url, saga_client **out, saga_error *err)
{
    saga_client *c;
    if (db_url == NULL || out == NULL)
        return saga__error_set(err, SAGA_EINVAL, "db_url and out must not be NULL");
    *out = NULL;
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    c->max_input_bytes = DEFAULT_MAX_INPUT_BYTES;
    c->db = PQconnectdb(db_url);
    if (PQstatus(c->db) != CONNECTION_OK) {
        int rc = saga__error_set(err, SAGA_EDB, "cannot connect to PostgreSQL: %s",
                                 PQerrorMessage(c->db));
        saga_client_free(c);
        return rc;
    }
    saga__pq_quiet(c->db);
    *out = c;
    return SAGA_OK;
}

/* Reconnect after a lost connection (a database restart); run the
 * statement again only when it is safe to (retry set: it only reads). */
static PGresult *query(saga_client *c, int retry, const char *sql, int n,
                       const char *const *params)
{
    PGresult *r;
    if (PQstatus(c->db) != CONNECTION_OK)
        PQreset(c->db);
    r = PQexecParams(c->db, sql, n, NULL, params, NULL, NULL, 0);
    if (retry && PQstatus(c->db) != CONNECTION_OK) {
        PQclear(r);
        PQreset(c->db);
        r = PQexecParams(c->db, sql, n, NULL, params, NULL, NULL, 0);
    }
    return r;
}

/* Refuse an input over saga.limits max_input_bytes before it is sent.
 * Sizes are counted as the trigger of migration 0011 counts them, on
 * PostgreSQL's jsonb text, which jansson's default separators (", ",
 * ": ") give too; fractional numbers may print a digit or so apart, so at
 * the very edge the trigger decides. The table is read only for an input
 * over the limit last seen: a raised limit is seen at once, and a lowered
 * one is the trigger's to enforce. No table (a schema before 0011): the
 * database has no limit either. */
static int input_fits(saga_client *c, const char *name, const json_t *input,
                      saga_error *err)
{
    int64_t size = input != NULL ? (int64_t)json_dumpb(input, NULL, 0, 0) : 2;
    char n1[32], n2[32];
    PGresult *r;

    if (size <= c->max_input_bytes)
        return SAGA_OK;
    r = query(c, 1, "SELECT value FROM saga.limits WHERE name = 'max_input_bytes'", 0,
              NULL);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        c->max_input_bytes = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    else
        size = 0; /* nothing known: the insert finds out */
    PQclear(r);
    if (size <= c->max_input_bytes)
        return SAGA_OK;
    return saga__error_set(err, SAGA_EINVAL,
                           "input of saga \"%.200s\" is %s bytes; the limit is %s "
                           "(saga.limits max_input_bytes)",
                           name, saga__bytes_text(size, n1, sizeof n1),
                           saga__bytes_text(c->max_input_bytes, n2, sizeof n2));
}

int saga_client_start(saga_client *c, const char *name, json_t *input,
                      const char *idempotency_key, char id[SAGA_ID_LEN + 1], int *existed,
                      saga_error *err)
{
    return saga_client_start_traced(c, name, input, idempotency_key, NULL, id, existed,
                                    err);
}

int saga_client_start_traced(saga_client *c, const char *name, json_t *input,
                             const char *idempotency_key, const char *traceparent,
                             char id[SAGA_ID_LEN + 1], int *existed, saga_error *err)
{
    saga_start_options o = SAGA_START_OPTIONS_INIT;
    o.idempotency_key = idempotency_key;
    o.traceparent = traceparent;
    return saga_client_start_with(c, name, input, &o, id, existed, err);
}

int saga_client_start_with(saga_client *c, const char *name, json_t *input,
                           const saga_start_options *opts, char id[SAGA_ID_LEN + 1],
                           int *existed, saga_error *err)
{
    char *text, at[32] = "", new_id[SAGA_ID_LEN + 1];
    PGresult *r;
    int rc = SAGA_OK;
    saga_trace_context ctx;
    saga_start_options o = SAGA_START_OPTIONS_INIT;
    const char *idempotency_key, *traceparent, *business_key;

    /* Only the fields the caller's struct has whole (it may be an older
     * one); a newer caller's fields past ours are not ours to read. */
    if (opts != NULL) {
        if (opts->size < offsetof(saga_start_options, business_key))
            return saga__error_set(err, SAGA_EINVAL,
                                   "start options: size %zu is not a saga_start_options "
                                   "(use SAGA_START_OPTIONS_INIT)",
                                   opts->size);
#define HAS(f) (opts->size >= offsetof(saga_start_options, f) + sizeof opts->f)
        o.idempotency_key = HAS(idempotency_key) ? opts->idempotency_key : NULL;
        o.traceparent = HAS(traceparent) ? opts->traceparent : NULL;
        o.business_key = HAS(business_key) ? opts->business_key : NULL;
        o.start_at_ms = HAS(start_at_ms) ? opts->start_at_ms : 0;
#undef HAS
    }
    idempotency_key = o.idempotency_key;
    traceparent = o.traceparent;
    business_key = o.business_key;

    if (existed != NULL)
        *existed = 0;
    if (c == NULL || name == NULL || *name == '\0' || id == NULL)
        return saga__error_set(err, SAGA_EINVAL, "client, name and id must be given");
    if (input != NULL && !json_is_object(input))
        return saga__error_set(err, SAGA_EINVAL, "input must be a JSON object");
    if (traceparent != NULL && *traceparent == '\0')
        traceparent = NULL;
    /* "" is no key: as a key, every caller passing "" for "none" would
     * get the first such caller's saga back. */
    if (idempotency_key != NULL && *idempotency_key == '\0')
        idempotency_key = NULL;
    if (traceparent != NULL &&
        saga_traceparent_parse(traceparent, strlen(traceparent), &ctx) != SAGA_OK)
        return saga__error_set(err, SAGA_EINVAL,
                               "traceparent \"%.80s\" is not a W3C traceparent "
                               "(00-<32 hex digits>-<16 hex digits>-<2 hex digits>)",
                               traceparent);
    if (business_key != NULL && (*business_key == '\0' || strlen(business_key) > 200))
        return saga__error_set(err, SAGA_EINVAL,
                               "business key: 1 to 200 bytes (NULL for none), not %zu",
                               strlen(business_key));
    if (o.start_at_ms < 0)
        return saga__error_set(err, SAGA_EINVAL,
                               "start_at_ms %lld: milliseconds since 1970 (0: now)",
                               (long long)o.start_at_ms);
    if (o.start_at_ms > 0)
        snprintf(at, sizeof at, "%lld", (long long)o.start_at_ms);
    if ((rc = input_fits(c, name, input, err)) != SAGA_OK ||
        (rc = saga__id_new(new_id, err)) != SAGA_OK)
        return rc;
    text = input != NULL ? json_dumps(input, JSON_COMPACT) : strdup("{}");
    if (text == NULL)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    {
        /* One round trip: insert (or find) the request and wake sagad. */
        const char *p[7] = {name,        text,         idempotency_key,
                            traceparent, business_key, at[0] ? at : NULL,
                            new_id};
        /* Not re-run after a lost connection: it may have committed. Retry
         * with the same idempotency key instead. */
        r = query(c, 0,
                  "WITH ins AS (INSERT INTO saga.start_request (id, name, input, "
                  "idempotency_key, traceparent, business_key, start_at)"
                  " VALUES ($7::uuid, $1, $2::jsonb, $3, $4, $5,"
                  "  to_timestamp($6::bigint / 1000.0))"
                  " ON CONFLICT (requested_by, idempotency_key) DO NOTHING RETURNING id)"
                  " SELECT id, false, pg_notify('saga_outbox', 'start') FROM ins"
                  " UNION ALL SELECT id, true, NULL FROM saga.start_request"
                  " WHERE idempotency_key = $3 AND requested_by = current_user"
                  " AND NOT EXISTS (SELECT 1 FROM ins)",
                  7, p);
    }
    free(text);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 0 &&
        idempotency_key != NULL) {
        /* Another client inserted the same key concurrently: ON CONFLICT
         * waited for it to commit, but the SELECT above reads with the
         * statement's snapshot, taken before, so it sees no row. A new
         * statement has a new snapshot that does. */
        const char *k[1] = {idempotency_key};
        PQclear(r);
        r = query(c, 1,
                  "SELECT id, true FROM saga.start_request WHERE idempotency_key = $1"
                  " AND requested_by = current_user",
                  1, k);
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        /* 54000: the limit's trigger refused the input (its message has
         * the size and the limit): the caller's input, not the database. */
        if (state != NULL && strcmp(state, "54000") == 0 && msg != NULL)
            rc = saga__error_set(err, SAGA_EINVAL, "%s", msg);
        else
            rc = saga__error_set(err, SAGA_EDB, "starting saga %s: %s", name,
                                 PQerrorMessage(c->db));
    } else if (PQntuples(r) != 1)
        rc = saga__error_set(err, SAGA_EDB, "starting saga %s: no id returned", name);
    else {
        snprintf(id, SAGA_ID_LEN + 1, "%s", PQgetvalue(r, 0, 0));
        if (existed != NULL)
            *existed = PQgetvalue(r, 0, 1)[0] == 't';
    }
    PQclear(r);
    return rc;
}

static int is_uuid(const char *s)
{
    if (s == NULL || strlen(s) != SAGA_ID_LEN)
        return 0;
    for (int i = 0; i < SAGA_ID_LEN; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return 0;
    }
    return 1;
}

int saga_client_status(saga_client *c, const char *id, char status[32], saga_error *err)
{
    const char *p[1] = {id};
    PGresult *r;
    int rc = SAGA_OK;

    if (c == NULL || status == NULL)
        return saga__error_set(err, SAGA_EINVAL, "client and status must be given");
    status[0] = '\0';
    if (!is_uuid(id))
        return saga__error_set(err, SAGA_EINVAL, "\"%.40s\" is not a saga id (a UUID)",
                               id ? id : "(null)");
    r = query(c, 1,
              "SELECT coalesce(s.status, CASE WHEN r.cancelled_at IS NOT NULL THEN"
              " 'cancelled' WHEN r.error IS NOT NULL THEN 'rejected'"
              " WHEN r.start_at > now() THEN 'scheduled'"
              " WHEN r.id IS NOT NULL THEN 'pending' END), r.error"
              " FROM (SELECT $1::uuid AS id) q"
              " LEFT JOIN saga.saga s ON s.id = q.id"
              " LEFT JOIN saga.start_request r ON r.id = q.id",
              1, p);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        rc = saga__error_set(err, SAGA_EDB, "reading saga %s: %s", id,
                             PQerrorMessage(c->db));
    else if (PQgetisnull(r, 0, 0))
        rc = saga__error_set(err, SAGA_ENOTFOUND, "no saga %s", id);
    else {
        snprintf(status, 32, "%s", PQgetvalue(r, 0, 0));
        if (!PQgetisnull(r, 0, 1))
            saga__error_set(err, SAGA_OK, "%s", PQgetvalue(r, 0, 1));
    }
    PQclear(r);
    return rc;
}

static int ended(const char *status)
{
    static const char *const names[] = {"completed", "compensated", "failed",
                                        "resolved",  "rejected",    "cancelled"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(status, names[i]) == 0)
            return 1;
    return 0;
}

int saga_client_wait(saga_client *c, const char *id, int timeout_ms, char status[32],
                     saga_error *err)
{
    /* The clock, not a count of sleeps: each status query takes time too,
     * and the wall clock may jump. */
    int64_t deadline =
        saga__mono_us() + (int64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000;
    for (;;) {
        int64_t left;
        struct timespec ts;
        int rc = saga_client_status(c, id, status, err);
        if (rc != SAGA_OK || ended(status))
            return rc;
        left = deadline - saga__mono_us();
        if (left <= 0)
            return saga__error_set(err, SAGA_ESTATE, "saga %s still %s after %d ms", id,
                                   status, timeout_ms);
        /* Every 50 ms, the last sleep no longer than what is left. */
        if (left > 50000)
            left = 50000;
        ts.tv_sec = 0;
        ts.tv_nsec = (long)left * 1000L;
        nanosleep(&ts, NULL);
    }
}

int saga_client_cancel(saga_client *c, const char *id, const char *reason,
                       saga_error *err)
{
    const char *p[2] = {id, reason};
    PGresult *r;
    int rc = SAGA_OK;
    if (c == NULL)
        return saga__error_set(err, SAGA_EINVAL, "client must be given");
    if (!is_uuid(id))
        return saga__error_set(err, SAGA_EINVAL, "\"%.40s\" is not a saga id (a UUID)",
                               id ? id : "(null)");
    if (reason == NULL || *reason == '\0' || strlen(reason) > 1000)
        return saga__error_set(err, SAGA_EINVAL,
                               "a reason is needed (1 to 1000 bytes): it is recorded");
    /* Closed only while not taken: sagad holds the row while it starts the
     * saga, and this UPDATE then finds it processed. */
    r = query(c, 0,
              "WITH c AS (UPDATE saga.start_request SET processed_at = now(),"
              " cancelled_at = now(), cancelled_by = current_user,"
              " error = 'cancelled by ' || current_user || ': ' || $2"
              " WHERE id = $1::uuid AND processed_at IS NULL RETURNING id)"
              " SELECT (SELECT count(*) FROM c),"
              " (SELECT CASE WHEN cancelled_at IS NOT NULL THEN 'cancelled'"
              "  WHEN error IS NOT NULL THEN 'rejected' ELSE 'started' END"
              "  FROM saga.start_request WHERE id = $1::uuid)",
              2, p);
    /* Not cancelled: read why with a new snapshot (the statement's
     * predates what sagad committed while the UPDATE waited for it). */
    if (PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "1") != 0) {
        PQclear(r);
        r = query(c, 1,
                  "SELECT 0, (SELECT CASE WHEN cancelled_at IS NOT NULL THEN 'cancelled'"
                  " WHEN error IS NOT NULL THEN 'rejected' ELSE 'started' END"
                  " FROM saga.start_request WHERE id = $1::uuid)",
                  1, p);
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        rc = saga__error_set(err, SAGA_EDB, "cancelling saga %s: %s", id,
                             PQerrorMessage(c->db));
    else if (strcmp(PQgetvalue(r, 0, 0), "1") == 0)
        rc = SAGA_OK;
    else if (PQgetisnull(r, 0, 1))
        rc = saga__error_set(err, SAGA_ENOTFOUND,
                             "no saga %s (or it was not started with a start request)",
                             id);
    else if (strcmp(PQgetvalue(r, 0, 1), "started") == 0)
        rc = saga__error_set(err, SAGA_ESTATE,
                             "saga %s has started: only a saga that has not started can "
                             "be cancelled (compensate it instead)",
                             id);
    else
        rc = saga__error_set(err, SAGA_ESTATE, "saga %s was %s already", id,
                             PQgetvalue(r, 0, 1));
    PQclear(r);
    return rc;
}

static int signal_name_ok(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > 100)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && strchr("_-.", s[i]) == NULL)
            return 0;
    return 1;
}

int saga_client_signal(saga_client *c, const char *id, const char *name,
                       const char *signal_id, json_t *payload, int failed,
                       const char *reason, int *duplicate, saga_error *err)
{
    char *text = NULL;
    PGresult *r;
    int rc = SAGA_OK;
    if (duplicate != NULL)
        *duplicate = 0;
    if (c == NULL)
        return saga__error_set(err, SAGA_EINVAL, "client must be given");
    if (!is_uuid(id))
        return saga__error_set(err, SAGA_EINVAL, "\"%.40s\" is not a saga id (a UUID)",
                               id ? id : "(null)");
    if (!signal_name_ok(name))
        return saga__error_set(
            err, SAGA_EINVAL,
            "signal name \"%.60s\": 1 to 100 letters, digits, '_', '-', "
            "'.'",
            name ? name : "(null)");
    if (signal_id != NULL && (*signal_id == '\0' || strlen(signal_id) > 200))
        return saga__error_set(err, SAGA_EINVAL, "a signal id is 1 to 200 bytes");
    if (payload != NULL && !json_is_object(payload))
        return saga__error_set(err, SAGA_EINVAL, "a signal's payload is a JSON object");
    if (failed && (reason == NULL || *reason == '\0'))
        return saga__error_set(
            err, SAGA_EINVAL,
            "a failing verdict needs a reason (it is the step's error)");
    if (reason != NULL && strlen(reason) > 1000)
        return saga__error_set(err, SAGA_EINVAL, "a reason is at most 1000 bytes");
    if (payload != NULL && (text = json_dumps(payload, JSON_COMPACT)) == NULL)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    {
        /* The same row saga_signal_send writes (orchestrator/store): kept
         * while the saga runs, absorbed when its id was seen. */
        const char *p[6] = {id, name, signal_id, text, failed ? "t" : "f", reason};
        r = query(c, 0,
                  "WITH s AS (SELECT status FROM saga.saga WHERE id = $1::uuid),"
                  " dup AS (SELECT 1 FROM saga.saga_signal WHERE saga_id = $1::uuid"
                  "  AND name = $2 AND signal_id = $3),"
                  " ins AS (INSERT INTO saga.saga_signal (saga_id, name, signal_id, "
                  "payload, failed, reason)"
                  "  SELECT $1::uuid, $2, coalesce($3, gen_random_uuid()::text),"
                  "   coalesce($4::jsonb, '{}'::jsonb), $5::bool, $6"
                  "  FROM s WHERE s.status = 'running' AND NOT EXISTS (SELECT 1 FROM dup)"
                  "  ON CONFLICT (saga_id, name, signal_id) DO NOTHING RETURNING 1)"
                  " SELECT (SELECT status FROM s), (SELECT count(*) FROM ins),"
                  "  (SELECT count(*) FROM dup),"
                  "  (SELECT pg_notify('saga_outbox', 'signal') FROM ins)",
                  6, p);
    }
    free(text);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        rc = saga__error_set(err, SAGA_EDB, "signalling saga %s: %s", id,
                             PQerrorMessage(c->db));
    else if (!PQgetisnull(r, 0, 0) && strcmp(PQgetvalue(r, 0, 2), "0") != 0) {
        if (duplicate != NULL) /* sent before: absorbed, whatever the saga is now */
            *duplicate = 1;
    } else if (PQgetisnull(r, 0, 0))
        rc = saga__error_set(err, SAGA_ENOTFOUND,
                             "no saga %s (a saga not started yet takes no signal)", id);
    else if (strcmp(PQgetvalue(r, 0, 0), "running") != 0)
        rc = saga__error_set(err, SAGA_ESTATE,
                             "saga %s is %s: it waits for no signal any more", id,
                             PQgetvalue(r, 0, 0));
    else if (duplicate != NULL)
        *duplicate = strcmp(PQgetvalue(r, 0, 1), "1") != 0;
    PQclear(r);
    return rc;
}

void saga_client_free(saga_client *c)
{
    if (c == NULL)
        return;
    PQfinish(c->db);
    free(c);
}
