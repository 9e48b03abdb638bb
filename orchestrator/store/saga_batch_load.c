/* saga_batch_load.c - reading sagas for a batch: many sagas and their steps
 * loaded and locked FOR UPDATE with two statements (a saga whose definition
 * cannot be read is set aside, not allowed to stall the others), and due
 * timers claimed with SKIP LOCKED so instances share them. */
#include "saga_batch_internal.h"
#include "saga_shared.h"

static json_t *get_json(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col)
               ? NULL
               : saga__json_from_pg(PQgetvalue(r, row, col), JSON_DECODE_ANY, NULL);
}

/* "{id,id,...}": ids are validated UUIDs, so no quoting is needed. */
static char *uuid_array(char (*ids)[SAGA_ID_LEN + 1], int n)
{
    size_t cap = (size_t)n * (SAGA_ID_LEN + 1) + 3, len = 0;
    char *a = malloc(cap);
    if (a == NULL)
        return NULL;
    a[len++] = '{';
    for (int i = 0; i < n; i++) {
        if (i > 0)
            a[len++] = ',';
        memcpy(a + len, ids[i], SAGA_ID_LEN);
        len += SAGA_ID_LEN;
    }
    a[len++] = '}';
    a[len] = '\0';
    return a;
}

static int find_id(char (*ids)[SAGA_ID_LEN + 1], int n, const char *id)
{
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strncmp(ids[mid], id, SAGA_ID_LEN);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

/* ---- loads ---- */

static int fill_saga(PGconn *db, saga_defs *defs, PGresult *r, int row, saga_state **out,
                     saga_error *err)
{
    const saga_definition *def;
    const char *id = PQgetvalue(r, row, 0);
    json_t *input;
    saga_state *s;
    int rc = saga_store_get_definition(db, defs, PQgetvalue(r, row, 1),
                                       atoi(PQgetvalue(r, row, 2)), &def, err);
    if (rc != SAGA_OK)
        return rc;
    input = get_json(r, row, 5);
    s = saga_state_new(def, id, input);
    json_decref(input);
    if (s == NULL)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    if (saga_status_parse(PQgetvalue(r, row, 3), &s->status) != 0) {
        saga_state_free(s);
        return saga__error_set(err, SAGA_EDB, "saga %s has unknown status", id);
    }
    s->cursor = atoi(PQgetvalue(r, row, 4));
    s->created_at = saga__pg_get_i64(r, row, 6);
    s->updated_at = saga__pg_get_i64(r, row, 7);
    s->deadline_at = saga__pg_get_i64(r, row, 8);
    s->wake_at = saga__pg_get_i64(r, row, 9);
    snprintf(s->traceparent, sizeof s->traceparent, "%s", PQgetvalue(r, row, 10));
    s->progressed_at = saga__pg_get_i64(r, row, 11);
    if (!PQgetisnull(r, row, 12)) {
        snprintf(s->parent_id, sizeof s->parent_id, "%s", PQgetvalue(r, row, 12));
        s->parent_step = atoi(PQgetvalue(r, row, 13));
    }
    *out = s;
    return SAGA_OK;
}

static void fill_step(saga_state *s, PGresult *r, int row)
{
    int idx = atoi(PQgetvalue(r, row, 1));
    saga_step_state *st;
    if (idx < 0 || idx >= s->nsteps)
        return;
    st = &s->steps[idx];
    saga_step_status_parse(PQgetvalue(r, row, 2), &st->status);
    st->attempts = atoi(PQgetvalue(r, row, 3));
    st->awaiting = PQgetvalue(r, row, 4)[0] == 't';
    st->due_at = saga__pg_get_i64(r, row, 5);
    st->started_at = saga__pg_get_i64(r, row, 6);
    st->finished_at = saga__pg_get_i64(r, row, 7);
    json_decref(st->output);
    json_decref(st->error);
    st->output = get_json(r, row, 8);
    st->error = get_json(r, row, 9);
    st->attempt_base = atoi(PQgetvalue(r, row, 10));
}

/* Keep a saga whose definition cannot be loaded out of the timers and say
 * why in its history; an operator repairs the definition, then retries. */
static int set_aside_saga(PGconn *db, const char *id, const char *why, saga_error *err)
{
    const char *p[3] = {id, why,
                        saga_history_kind_name(SAGA_HIST_DEFINITION_UNAVAILABLE)};
    PGresult *r = PQexecParams(
        db,
        "WITH s AS (UPDATE saga.saga SET wake_at = NULL WHERE id = $1 RETURNING id)"
        " INSERT INTO saga.saga_event (saga_id, at, kind, detail)"
        " SELECT id, clock_timestamp(), $3::text,"
        " jsonb_build_object('error', $2::text) FROM s"
        /* Once in a row: each reply that comes for it would add one. */
        " WHERE (SELECT kind FROM saga.saga_event WHERE saga_id = s.id"
        "  ORDER BY id DESC LIMIT 1) IS DISTINCT FROM $3::text",
        3, NULL, p, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        saga_pgerr_note(r);
    PQclear(r);
    if (!ok)
        return saga__error_set(err, SAGA_EDB, "setting saga %s aside: %s", id,
                               PQerrorMessage(db));
    return SAGA_OK;
}

int saga_batch_load(PGconn *db, saga_defs *defs, char (*ids)[SAGA_ID_LEN + 1], int n,
                    int begin, saga_state **out, unsigned char *set_aside,
                    saga_error *err)
{
    PGresult *rs = NULL, *rt = NULL, *rb = NULL;
    char *arr = uuid_array(ids, n);
    const char *p[1] = {arr};
    int rc = SAGA_OK, synced = 0;

    for (int i = 0; i < n; i++)
        out[i] = NULL;
    if (arr == NULL)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    if (PQenterPipelineMode(db) != 1) {
        free(arr);
        return saga__error_set(err, SAGA_EDB, "entering pipeline mode: %s",
                               PQerrorMessage(db));
    }
    if ((begin && (rc = saga__batch_send_plain(db, "BEGIN", err)) != SAGA_OK) ||
        (rc = saga__batch_send_prepared(db, "saga_load_sagas", 1, p, err)) != SAGA_OK ||
        (rc = saga__batch_send_prepared(db, "saga_load_steps", 1, p, err)) != SAGA_OK)
        goto out;
    if (PQpipelineSync(db) != 1) {
        rc = saga__error_set(err, SAGA_EDB, "pipeline sync: %s", PQerrorMessage(db));
        goto out;
    }
    synced = 1;
    if (begin &&
        (rb = saga__batch_next_result(db, PGRES_COMMAND_OK, "BEGIN", err)) == NULL)
        rc = SAGA_EDB;
    rs = saga__batch_next_result(db, PGRES_TUPLES_OK, "loading sagas", err);
    rt = saga__batch_next_result(db, PGRES_TUPLES_OK, "loading saga steps", err);
    if (rs == NULL || rt == NULL)
        rc = SAGA_EDB;
out:
    saga__batch_end_pipeline(db, synced);
    free(arr);
    if (rc == SAGA_OK) {
        /* Definitions missing from the cache are read now, outside the
         * pipeline. */
        for (int i = 0; set_aside != NULL && i < n; i++)
            set_aside[i] = 0;
        for (int i = 0; i < PQntuples(rs) && rc == SAGA_OK; i++) {
            int k = find_id(ids, n, PQgetvalue(rs, i, 0));
            if (k < 0 || out[k] != NULL)
                continue;
            rc = fill_saga(db, defs, rs, i, &out[k], err);
            if ((rc == SAGA_EDEF || rc == SAGA_ENOTFOUND) && set_aside != NULL &&
                err != NULL) {
                char why[sizeof err->message];
                snprintf(why, sizeof why, "%s", err->message);
                memset(err, 0, sizeof *err);
                out[k] = NULL;
                set_aside[k] = 1;
                rc = set_aside_saga(db, ids[k], why, err);
            }
        }
        for (int i = 0; i < PQntuples(rt) && rc == SAGA_OK; i++) {
            int k = find_id(ids, n, PQgetvalue(rt, i, 0));
            if (k >= 0 && out[k] != NULL)
                fill_step(out[k], rt, i);
        }
        if (rc == SAGA_OK)
            rc = saga__batch_load_elements(db, out, n, err);
        if (rc != SAGA_OK)
            for (int i = 0; i < n; i++) {
                saga_state_free(out[i]);
                out[i] = NULL;
            }
    }
    PQclear(rb);
    PQclear(rs);
    PQclear(rt);
    return rc;
}

int saga_batch_claim_due(PGconn *db, int limit, char (*ids)[SAGA_ID_LEN + 1], int *n,
                         saga_error *err)
{
    char lbuf[16];
    const char *p[1] = {lbuf};
    PGresult *r;
    snprintf(lbuf, sizeof lbuf, "%d", limit);
    *n = 0;
    r = PQexecPrepared(db, "saga_claim_due", 1, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        saga_pgerr_note(r);
        PQclear(r);
        return saga__error_set(err, SAGA_EDB, "claiming due timers: %s",
                               PQerrorMessage(db));
    }
    *n = PQntuples(r);
    for (int i = 0; i < *n; i++)
        snprintf(ids[i], SAGA_ID_LEN + 1, "%s", PQgetvalue(r, i, 0));
    PQclear(r);
    return SAGA_OK;
}
