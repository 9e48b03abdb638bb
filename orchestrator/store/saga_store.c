/* PostgreSQL persistence for sagas (see saga_store.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "saga/protocol.h"
#include "saga_shared.h"
#include "saga_batch.h"
#include "saga_pgerr.h"
#include "saga_store.h"
#include "saga_tracing.h"

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
        saga_error_set(err, SAGA_EDB, "%s: %s", sql, PQerrorMessage(db));
    }
    PQclear(r);
    return ok ? SAGA_OK : SAGA_EDB;
}

static PGresult *q(PGconn *db, const char *sql, int n, const char *const *params,
                   ExecStatusType want, const char *what, saga_error *err)
{
    PGresult *r = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != want) {
        saga_pgerr_note(r);
        saga_error_set(err, SAGA_EDB, "%s: %s", what, PQerrorMessage(db));
        PQclear(r);
        return NULL;
    }
    return r;
}

/* Text forms of values for parameters; NULL for "none". */
typedef struct numbuf {
    char b[32];
} numbuf;

static const char *i64(numbuf *nb, int64_t v)
{
    snprintf(nb->b, sizeof nb->b, "%lld", (long long)v);
    return nb->b;
}

static const char *ms_or_null(numbuf *nb, int64_t v)
{
    return v > 0 ? i64(nb, v) : NULL;
}

static int64_t get_i64(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

int saga_store_limit(PGconn *db, const char *name, int64_t *out, saga_error *err)
{
    const char *params[1] = {name};
    PGresult *r = q(db, "SELECT value FROM saga.limits WHERE name = $1", 1, params,
                    PGRES_TUPLES_OK, "reading saga.limits", err);
    if (r == NULL)
        return SAGA_EDB;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return saga_error_set(err, SAGA_ENOTFOUND, "saga.limits has no %s", name);
    }
    *out = get_i64(r, 0, 0);
    PQclear(r);
    return SAGA_OK;
}

/* ---- definitions ---- */

struct saga_defs {
    int n, cap;
    saga_definition **items;
    int last_version;
};

int saga_defs_last_version(const saga_defs *d)
{
    return d != NULL ? d->last_version : 0;
}

saga_defs *saga_defs_new(void)
{
    return calloc(1, sizeof(saga_defs));
}

void saga_defs_free(saga_defs *d)
{
    if (d == NULL)
        return;
    for (int i = 0; i < d->n; i++)
        saga_definition_free(d->items[i]);
    free(d->items);
    free(d);
}

static const saga_definition *defs_find(const saga_defs *d, const char *name, int version)
{
    for (int i = 0; i < d->n; i++)
        if (d->items[i]->version == version && strcmp(d->items[i]->name, name) == 0)
            return d->items[i];
    return NULL;
}

/* Take def into the cache; if that version is cached already, free def. */
static int defs_put(saga_defs *d, saga_definition *def, const saga_definition **out)
{
    const saga_definition *have = defs_find(d, def->name, def->version);
    if (have != NULL) {
        saga_definition_free(def);
        *out = have;
        return SAGA_OK;
    }
    if (d->n == d->cap) {
        int cap = d->cap ? d->cap * 2 : 8;
        saga_definition **it = realloc(d->items, sizeof *it * (size_t)cap);
        if (it == NULL) {
            saga_definition_free(def);
            return SAGA_ENOMEM;
        }
        d->items = it;
        d->cap = cap;
    }
    d->items[d->n++] = def;
    *out = def;
    return SAGA_OK;
}

int saga_store_register_definition(PGconn *db, saga_defs *defs, saga_definition *def,
                                   int *created, saga_error *err)
{
    char *body = json_dumps(def->body, JSON_COMPACT | JSON_SORT_KEYS);
    const char *p[2] = {def->name, body};
    const saga_definition *kept;
    PGresult *r;

    *created = 0;
    if (body == NULL) {
        saga_definition_free(def);
        return saga_error_set(err, SAGA_ENOMEM, "out of memory");
    }
    /* jsonb normalises key order and spacing, so the digest is of content.
     * The advisory lock makes concurrent deploys of one name take turns. */
    r = q(
        db,
        "WITH lock AS (SELECT pg_advisory_xact_lock(hashtext('saga_definition:' || $1))),"
        " d AS (SELECT encode(sha256(convert_to(($2::jsonb)::text, 'UTF8')), 'hex') AS "
        "digest"
        "       FROM lock),"
        " old AS (SELECT version FROM saga.saga_definition, d"
        "         WHERE name = $1 AND saga_definition.digest = d.digest),"
        " ins AS (INSERT INTO saga.saga_definition (name, version, body, digest)"
        "         SELECT $1, coalesce((SELECT max(version) FROM saga.saga_definition"
        "                               WHERE name = $1), 0) + 1, $2::jsonb, d.digest"
        "         FROM d WHERE NOT EXISTS (SELECT 1 FROM old) RETURNING version)"
        " SELECT version, true FROM ins UNION ALL SELECT version, false FROM old",
        2, p, PGRES_TUPLES_OK, "storing the definition", err);
    free(body);
    if (r == NULL) {
        saga_definition_free(def);
        return SAGA_EDB;
    }
    if (PQntuples(r) != 1) {
        PQclear(r);
        saga_definition_free(def);
        return saga_error_set(err, SAGA_EDB,
                              "storing the definition: no version returned");
    }
    def->version = atoi(PQgetvalue(r, 0, 0));
    defs->last_version = def->version;
    *created = PQgetvalue(r, 0, 1)[0] == 't';
    PQclear(r);
    return defs_put(defs, def, &kept);
}

int saga_store_get_definition(PGconn *db, saga_defs *defs, const char *name, int version,
                              const saga_definition **out, saga_error *err)
{
    char vbuf[16];
    const char *p[2] = {name, vbuf};
    saga_def_problems probs = {0};
    saga_definition *def;
    PGresult *r;
    int rc;

    if (version > 0 && (*out = defs_find(defs, name, version)) != NULL)
        return SAGA_OK;
    snprintf(vbuf, sizeof vbuf, "%d", version);
    r = q(db,
          "SELECT version, body::text FROM saga.saga_definition WHERE name = $1"
          " AND ($2::int = 0 OR version = $2::int) ORDER BY version DESC LIMIT 1",
          2, p, PGRES_TUPLES_OK, "loading a definition", err);
    if (r == NULL)
        return SAGA_EDB;
    if (PQntuples(r) == 0) {
        PQclear(r);
        if (version > 0)
            return saga_error_set(err, SAGA_ENOTFOUND, "no definition %s version %d",
                                  name, version);
        return saga_error_set(err, SAGA_ENOTFOUND,
                              "no definition named \"%s\" (deploy it, or "
                              "start sagad with it in its folder)",
                              name);
    }
    version = atoi(PQgetvalue(r, 0, 0));
    if ((*out = defs_find(defs, name, version)) != NULL) {
        PQclear(r);
        return SAGA_OK;
    }
    /* It was valid when deployed; a later release's stricter rules must not
     * strand the sagas that run on it. */
    probs.stored = 1;
    rc = saga_definition_parse(PQgetvalue(r, 0, 1), strlen(PQgetvalue(r, 0, 1)), &def,
                               &probs);
    PQclear(r);
    if (rc == SAGA_ENOMEM) /* passing, not the definition's fault */
        return saga_error_set(err, SAGA_ENOMEM, "out of memory");
    if (rc != SAGA_OK)
        return saga_error_set(err, SAGA_EDEF,
                              "stored definition %s version %d is invalid: %s: %s", name,
                              version, probs.items[0].where, probs.items[0].message);
    def->version = version;
    if (defs_put(defs, def, out) != SAGA_OK)
        return saga_error_set(err, SAGA_ENOMEM, "out of memory");
    return SAGA_OK;
}

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
    if (o->n == o->cap) {
        int cap = o->cap ? o->cap * 2 : 16;
        saga_outbox_msg *it = realloc(o->items, sizeof *it * (size_t)cap);
        if (it == NULL) {
            free(payload);
            return SAGA_ENOMEM;
        }
        o->items = it;
        o->cap = cap;
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
    r = q(db,
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
            saga_outbox_push(out, get_i64(r, i, 0), PQgetvalue(r, i, 1),
                             PQgetvalue(r, i, 2), payload,
                             PQgetvalue(r, i, 4)) != SAGA_OK) {
            PQclear(r);
            return saga_error_set(err, SAGA_ENOMEM, "out of memory");
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
        return saga_error_set(err, SAGA_ENOMEM, "out of memory");
    arr[len++] = '{';
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(arr + len, cap - len, "%s%lld", i ? "," : "",
                                (long long)ids[i]);
    arr[len++] = '}';
    arr[len] = '\0';
    p[0] = arr;
    r = q(db, "DELETE FROM saga.outbox WHERE id = ANY($1::bigint[])", 1, p,
          PGRES_COMMAND_OK, "deleting sent outbox rows", err);
    free(arr);
    if (r == NULL)
        return SAGA_EDB;
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
        return saga_error_set(err, SAGA_ENOMEM, "out of memory");
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
    r = q(db,
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

/* ---- sagas ---- */

int saga_store_encode_command(const saga_state *s, const saga_action *ac,
                              const char *prefix, char **text, char topic[256],
                              char traceparent[SAGA_TRACEPARENT_LEN + 1], saga_error *err)
{
    const saga_step_def *sd = &s->def->steps[ac->step];
    saga_command cmd = {0};
    char cmd_id[128], reply_to[256];

    saga__topic_reply(reply_to, sizeof reply_to, prefix);
    cmd.v = SAGA_PROTOCOL_VERSION;
    memcpy(cmd.saga_id, s->id, sizeof cmd.saga_id);
    cmd.saga = s->def->name;
    cmd.saga_version = s->def->version;
    cmd.step = ac->step;
    cmd.step_name = sd->name;
    cmd.phase = ac->phase;
    cmd.action = ac->phase == SAGA_PHASE_COMPENSATE ? sd->compensation : sd->action;
    saga_command_id_format(cmd_id, sizeof cmd_id, s->id, ac->step, ac->phase);
    cmd.command_id = cmd_id;
    cmd.attempt = ac->attempt;
    cmd.deadline = ac->deadline;
    cmd.reply_to = reply_to;
    cmd.payload = ac->payload;
    saga__topic_cmd(topic, 256, prefix, sd->service);
    saga_tracing_step(s->traceparent, ac->step, ac->phase, ac->attempt, traceparent,
                      SAGA_TRACEPARENT_LEN + 1);
    return saga_command_encode(&cmd, text, NULL, err);
}

static int write_actions(PGconn *db, const saga_state *s, const saga_actions *a,
                         const saga_store_opts *o, saga_outbox *sent, saga_error *err)
{
    const char *prefix = o && o->topic_prefix ? o->topic_prefix : "saga.";
    const char *actor = o && o->actor ? o->actor : "sagad";
    numbuf nb[4];

    for (int i = 0; i < a->n; i++) {
        const saga_action *ac = &a->items[i];
        PGresult *r;
        if (ac->kind == SAGA_ACT_HISTORY) {
            char *detail = ac->detail
                               ? json_dumps(ac->detail, JSON_COMPACT | JSON_ENCODE_ANY)
                               : NULL;
            const char *p[8] = {s->id,
                                i64(&nb[0], s->updated_at),
                                ac->what,
                                ac->step >= 0 ? i64(&nb[1], ac->step) : NULL,
                                ac->step >= 0 ? saga_phase_name(ac->phase) : NULL,
                                ac->attempt > 0 ? i64(&nb[2], ac->attempt) : NULL,
                                detail,
                                actor};
            r = q(db,
                  "INSERT INTO saga.saga_event (saga_id, at, kind, step, phase, attempt, "
                  "detail,"
                  " actor) VALUES ($1, saga.ts($2), $3, $4, $5, $6, $7::jsonb, $8)",
                  8, p, PGRES_COMMAND_OK, "writing history", err);
            free(detail);
        } else {
            char topic[256], *text = NULL, tp[SAGA_TRACEPARENT_LEN + 1];
            int rc = saga_store_encode_command(s, ac, prefix, &text, topic, tp, err);
            if (rc != SAGA_OK)
                return rc;
            {
                const char *p[5] = {s->id, topic, s->id, text, tp[0] ? tp : NULL};
                r = q(db,
                      "INSERT INTO saga.outbox (saga_id, topic, msg_key, payload,"
                      " traceparent) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                      5, p, PGRES_TUPLES_OK, "writing the outbox", err);
            }
            if (r != NULL && sent != NULL) {
                if (saga_outbox_push(sent, get_i64(r, 0, 0), topic, s->id, text, tp) !=
                    SAGA_OK) {
                    PQclear(r);
                    return saga_error_set(err, SAGA_ENOMEM, "out of memory");
                }
                text = NULL;
            }
            free(text);
        }
        if (r == NULL)
            return SAGA_EDB;
        PQclear(r);
    }
    return SAGA_OK;
}

/* One statement for insert and update; timestamps travel as ms. */
static const char upsert_step_sql[] =
    "INSERT INTO saga.saga_step (saga_id, idx, name, status, attempts, attempt_base,"
    " awaiting, due_at, output, error, started_at, finished_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, saga.ts($8), $9::jsonb, $10::jsonb, "
    "saga.ts($11),"
    " saga.ts($12))"
    " ON CONFLICT (saga_id, idx) DO UPDATE SET status = EXCLUDED.status,"
    " attempts = EXCLUDED.attempts, attempt_base = EXCLUDED.attempt_base,"
    " awaiting = EXCLUDED.awaiting, due_at = EXCLUDED.due_at, output = EXCLUDED.output,"
    " error = EXCLUDED.error, started_at = EXCLUDED.started_at,"
    " finished_at = EXCLUDED.finished_at";

static int write_steps(PGconn *db, const saga_state *s, int all, saga_error *err)
{
    for (int i = 0; i < s->nsteps; i++) {
        const saga_step_state *st = &s->steps[i];
        numbuf nb[6];
        char *out, *er;
        PGresult *r;
        if (!all && !st->dirty)
            continue;
        out = st->output ? json_dumps(st->output, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        er = st->error ? json_dumps(st->error, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        {
            const char *p[12] = {s->id,
                                 i64(&nb[0], i),
                                 s->def->steps[i].name,
                                 saga_step_status_name(st->status),
                                 i64(&nb[1], st->attempts),
                                 i64(&nb[5], st->attempt_base),
                                 st->awaiting ? "true" : "false",
                                 ms_or_null(&nb[2], st->due_at),
                                 out,
                                 er,
                                 ms_or_null(&nb[3], st->started_at),
                                 ms_or_null(&nb[4], st->finished_at)};
            r = q(db, upsert_step_sql, 12, p, PGRES_COMMAND_OK, "writing a step", err);
        }
        free(out);
        free(er);
        if (r == NULL)
            return SAGA_EDB;
        PQclear(r);
    }
    return SAGA_OK;
}

int saga_store_create(PGconn *db, const saga_state *s, const saga_actions *actions,
                      const char *idempotency_key, const saga_store_opts *o, int *existed,
                      char existing_id[SAGA_ID_LEN + 1], saga_outbox *sent,
                      saga_error *err)
{
    char *input = json_dumps(s->input, JSON_COMPACT);
    numbuf nb[6];
    const char *p[11] = {s->id,
                         s->def->name,
                         i64(&nb[0], s->def->version),
                         saga_status_name(s->status),
                         i64(&nb[1], s->cursor),
                         input,
                         idempotency_key,
                         ms_or_null(&nb[2], s->deadline_at),
                         ms_or_null(&nb[3], s->wake_at),
                         i64(&nb[4], s->created_at),
                         s->traceparent[0] ? s->traceparent : NULL};
    PGresult *r;
    int rc;

    *existed = 0;
    if (input == NULL)
        return saga_error_set(err, SAGA_ENOMEM, "out of memory");
    r = q(db,
          "INSERT INTO saga.saga (id, name, version, status, cursor_step, input,"
          " idempotency_key, deadline_at, wake_at, created_at, updated_at, progressed_at,"
          " traceparent)"
          " VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, saga.ts($8), saga.ts($9),"
          " saga.ts($10), saga.ts($10), saga.ts($10), $11)"
          " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
          11, p, PGRES_TUPLES_OK, "creating the saga", err);
    free(input);
    if (r == NULL)
        return SAGA_EDB;
    if (PQntuples(r) == 0) {
        const char *pk[1] = {idempotency_key};
        PQclear(r);
        r = q(db, "SELECT id FROM saga.saga WHERE idempotency_key = $1", 1, pk,
              PGRES_TUPLES_OK, "finding the saga with that idempotency key", err);
        if (r == NULL)
            return SAGA_EDB;
        if (PQntuples(r) == 1) {
            snprintf(existing_id, SAGA_ID_LEN + 1, "%s", PQgetvalue(r, 0, 0));
            *existed = 1;
        }
        PQclear(r);
        return *existed ? SAGA_OK
                        : saga_error_set(err, SAGA_EDB, "idempotency key conflict");
    }
    PQclear(r);
    if ((rc = write_steps(db, s, 1, err)) != SAGA_OK)
        return rc;
    return write_actions(db, s, actions, o, sent, err);
}

int saga_store_load(PGconn *db, saga_defs *defs, const char *id, saga_state **out,
                    saga_error *err)
{
    char ids[1][SAGA_ID_LEN + 1];
    PGresult *r;
    int rc;

    *out = NULL;
    if (strlen(id) != SAGA_ID_LEN)
        return saga_error_set(err, SAGA_ENOTFOUND, "no saga %s", id);
    for (int i = 0; i <= SAGA_ID_LEN; i++) /* PostgreSQL prints UUIDs in lower case */
        ids[0][i] = (char)(id[i] >= 'A' && id[i] <= 'F' ? id[i] - 'A' + 'a' : id[i]);
    /* One way to read a saga: sagad's batch loader, prepared on first use
     * on this connection. */
    /* (Asked of the catalog: describing a missing statement would be an
     * error that aborts the caller's transaction.) */
    r = PQexec(db, "SELECT 1 FROM pg_prepared_statements WHERE name = 'saga_load_sagas'");
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        rc = saga_error_set(err, SAGA_EDB, "loading saga %s: %s", id, PQerrorMessage(db));
    else
        rc = PQntuples(r) == 1 ? SAGA_OK : saga_batch_prepare(db, err);
    PQclear(r);
    if (rc == SAGA_OK)
        rc = saga_batch_load(db, defs, ids, 1, 0, out, NULL, err);
    if (rc == SAGA_OK && *out == NULL)
        rc = saga_error_set(err, SAGA_ENOTFOUND, "no saga %s", id);
    return rc;
}

int saga_store_save(PGconn *db, const saga_state *s, const saga_actions *actions,
                    const saga_store_opts *o, saga_outbox *sent, saga_error *err)
{
    numbuf nb[5];
    const char *p[7] = {s->id,
                        saga_status_name(s->status),
                        i64(&nb[0], s->cursor),
                        ms_or_null(&nb[1], s->wake_at),
                        i64(&nb[2], s->updated_at),
                        ms_or_null(&nb[3], s->deadline_at),
                        ms_or_null(&nb[4], s->progressed_at)};
    PGresult *r;
    int rc;

    r = q(db,
          "UPDATE saga.saga SET status = $2, cursor_step = $3, wake_at = saga.ts($4),"
          " updated_at = saga.ts($5), deadline_at = saga.ts($6),"
          " progressed_at = coalesce(saga.ts($7), progressed_at) WHERE id = $1",
          7, p, PGRES_COMMAND_OK, "saving the saga", err);
    if (r == NULL)
        return SAGA_EDB;
    PQclear(r);
    if ((rc = write_steps(db, s, 0, err)) != SAGA_OK)
        return rc;
    return write_actions(db, s, actions, o, sent, err);
}
