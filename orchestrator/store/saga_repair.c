/* saga_repair.c - operator repairs of one saga or of many (see
 * saga_repair.h): the sagas locked FOR UPDATE, the operator's event
 * applied, the changes written by saga_batch and sagad woken to send, in
 * one transaction per batch of sagas. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga_batch.h"
#include "saga_pgerr.h"
#include "saga_repair.h"
#include "saga_shared.h"

/* A jitter draw for the machine (retry back-off); no need for quality,
 * only that concurrent threads do not share rand()'s state. */
static double draw(const char *id)
{
    uint64_t x = (uint64_t)saga__wall_ms() * 0x9E3779B97F4A7C15ull;
    for (const char *c = id; *c; c++)
        x = (x ^ (unsigned char)*c) * 0x100000001B3ull;
    return (double)(x >> 11) / 9007199254740992.0;
}

static void describe(const saga_state *s, saga_repair_result *r)
{
    snprintf(r->status, sizeof r->status, "%s", saga_status_name(s->status));
    snprintf(r->step, sizeof r->step, "%s", s->def->steps[s->cursor].name);
    snprintf(r->step_status, sizeof r->step_status, "%s",
             saga_step_status_name(s->steps[s->cursor].status));
}

/* Apply rq to the sagas ids[0..n) (sorted, distinct, lower case) in one
 * transaction; out[i] says what became of ids[i]. A saga no longer of
 * status want (unless NULL: it changed since it was found) is left. */
static int repair_ids(PGconn *db, const saga_repair_req *rq, char (*ids)[SAGA_ID_LEN + 1],
                      int n, const char *want, saga_repair_result *out, saga_error *err)
{
    saga_store_opts so = {.topic_prefix = rq->topic_prefix, .actor = rq->actor};
    saga_defs *defs = saga_defs_new();
    saga_batch *batch = saga_batch_new(&so, NULL, 0);
    saga_state **s = calloc((size_t)n, sizeof *s);
    unsigned char *aside = calloc((size_t)n, 1);
    saga_outbox sent = {0};
    int rc = SAGA_OK, sends = 0;

    if (defs == NULL || batch == NULL || s == NULL || aside == NULL)
        rc = saga__error_set(err, SAGA_ENOMEM, "out of memory");
    if (rc == SAGA_OK)
        rc = saga_batch_prepare(db, err);
    if (rc == SAGA_OK)
        /* A saga whose definition cannot be read is set aside (and said
         * so), not allowed to fail the repair of the others. */
        rc = saga_batch_load(db, defs, ids, n, 1, s, aside, err);
    for (int i = 0; i < n && rc == SAGA_OK; i++) {
        saga_repair_result *r = &out[i];
        saga_actions acts = {0};
        const char *why = NULL;
        int step = -1, applied;
        memset(r, 0, sizeof *r);
        memcpy(r->id, ids[i], sizeof r->id);
        if (s[i] == NULL && aside[i]) {
            r->outcome = SAGA_REPAIR_REFUSED;
            snprintf(r->why, sizeof r->why,
                     "its definition cannot be read (sagactl show says why)");
            snprintf(r->status, sizeof r->status, "unknown");
            continue;
        }
        if (s[i] == NULL) {
            r->outcome = SAGA_REPAIR_NOT_FOUND;
            continue;
        }
        if (want != NULL && strcmp(saga_status_name(s[i]->status), want) != 0) {
            r->outcome = SAGA_REPAIR_REFUSED;
            snprintf(r->why, sizeof r->why, "no longer %s", want);
            describe(s[i], r);
            continue;
        }
        if (rq->kind == SAGA_EV_OP_SKIP &&
            (rq->step == NULL ||
             (step = saga_definition_step_index(s[i]->def, rq->step)) < 0)) {
            r->outcome = SAGA_REPAIR_REFUSED;
            snprintf(r->why, sizeof r->why, "definition %s has no step \"%.100s\"",
                     s[i]->def->name, rq->step ? rq->step : "");
            describe(s[i], r);
            continue;
        }
        {
            saga_event ev = {.kind = rq->kind,
                             .now = saga_now_ms(),
                             .random = draw(ids[i]),
                             .actor = rq->operator,
                             .on_behalf_of = rq->on_behalf_of,
                             .reason = rq->reason,
                             .step = step,
                             .output = rq->output};
            applied = saga_machine_apply(s[i], &ev, &acts, &why);
        }
        if (applied == SAGA_APPLIED) {
            for (int k = 0; k < acts.n; k++)
                r->commands_sent += acts.items[k].kind == SAGA_ACT_SEND;
            sends += r->commands_sent;
            rc = saga_batch_add(batch, s[i], &acts, 0, err);
            r->outcome = SAGA_REPAIR_DONE;
        } else if (applied == SAGA_ENOMEM) {
            rc = saga__error_set(err, SAGA_ENOMEM, "out of memory");
        } else {
            r->outcome = SAGA_REPAIR_REFUSED;
            snprintf(r->why, sizeof r->why, "%s", why ? why : "not applicable");
        }
        describe(s[i], r);
        saga_actions_clear(&acts);
    }
    /* sagad's outbox relay wakes for the commands written (NOTIFY is
     * delivered when the transaction commits). */
    if (rc == SAGA_OK && sends > 0)
        rc = saga_store_exec(db, "NOTIFY saga_outbox", err);
    if (rc == SAGA_OK)
        rc = saga_batch_count(batch) > 0 ? saga_batch_commit(db, batch, &sent, err)
                                         : saga_store_exec(db, "COMMIT", err);
    if (rc != SAGA_OK)
        saga_store_exec(db, "ROLLBACK", NULL);
    for (int i = 0; s != NULL && i < n; i++)
        saga_state_free(s[i]);
    free(s);
    free(aside);
    saga_outbox_clear(&sent);
    saga_batch_free(batch);
    saga_defs_free(defs);
    return rc;
}

int saga_repair_one(PGconn *db, const saga_repair_req *rq, const char *id,
                    saga_repair_result *out, saga_error *err)
{
    char ids[1][SAGA_ID_LEN + 1];
    if (strlen(id) != SAGA_ID_LEN)
        return saga__error_set(err, SAGA_EINVAL, "\"%.60s\" is not a saga id", id);
    for (int i = 0; i <= SAGA_ID_LEN; i++) /* PostgreSQL prints UUIDs in lower case */
        ids[0][i] = (char)(id[i] >= 'A' && id[i] <= 'F' ? id[i] - 'A' + 'a' : id[i]);
    return repair_ids(db, rq, ids, 1, NULL, out, err);
}

/* ---- many ---- */

/* $1 definition, $2 status, $3 step, $4 business key, $5 since,
 * $6 older than. */
#define FILTER                                                                           \
    " FROM saga.saga s WHERE ($1::text IS NULL OR s.name = $1)"                          \
    " AND ($2::text IS NULL OR s.status = $2)"                                           \
    " AND ($3::text IS NULL OR EXISTS (SELECT 1 FROM saga.saga_step st"                  \
    "  WHERE st.saga_id = s.id AND st.idx = s.cursor_step AND st.name = $3))"            \
    " AND ($4::text IS NULL OR s.business_key = $4)"                                     \
    " AND ($5::timestamptz IS NULL OR s.created_at >= $5::timestamptz)"                  \
    " AND ($6::timestamptz IS NULL OR s.created_at < $6::timestamptz)"

static const char count_sql[] = "SELECT count(*)" FILTER;
/* The next ids after $7, $8 of them. */
static const char next_sql[] =
    "SELECT s.id" FILTER " AND ($7::uuid IS NULL OR s.id > $7::uuid)"
    " ORDER BY s.id LIMIT $8::int";

static const char *or_null(const char *s)
{
    return s != NULL && *s != '\0' ? s : NULL;
}

static int filter_params(const saga_repair_filter *f, const char **p, saga_error *err)
{
    p[0] = or_null(f->definition);
    p[1] = or_null(f->status);
    p[2] = or_null(f->step);
    p[3] = or_null(f->business_key);
    p[4] = or_null(f->since);
    p[5] = or_null(f->older_than);
    for (int i = 0; i < 6; i++)
        if (p[i] != NULL)
            return SAGA_OK;
    return saga__error_set(err, SAGA_EINVAL,
                           "a bulk repair needs a filter (definition, status, step, "
                           "business key or a time)");
}

/* The next up to max ids that f matches after `after` (NULL: from the
 * first), into ids. */
static int next_ids(PGconn *db, const saga_repair_filter *f, const char *after, int max,
                    char (*ids)[SAGA_ID_LEN + 1], int *n, saga_error *err)
{
    const char *p[8];
    char lim[16];
    PGresult *r;
    int rc;
    *n = 0;
    if ((rc = filter_params(f, p, err)) != SAGA_OK)
        return rc;
    snprintf(lim, sizeof lim, "%d", max);
    p[6] = after;
    p[7] = lim;
    r = PQexecParams(db, next_sql, 8, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        saga_pgerr_note(r);
        rc = saga__error_set(err, SAGA_EDB, "finding sagas to repair: %s",
                             PQerrorMessage(db));
    } else {
        for (int i = 0; i < PQntuples(r) && i < max; i++)
            snprintf(ids[(*n)++], SAGA_ID_LEN + 1, "%s", PQgetvalue(r, i, 0));
    }
    PQclear(r);
    return rc;
}

int saga_repair_count(PGconn *db, const saga_repair_filter *f, long long *count,
                      char (*sample)[SAGA_ID_LEN + 1], int nsample, int *nsampled,
                      saga_error *err)
{
    const char *p[6];
    PGresult *r;
    int rc;
    *count = 0;
    *nsampled = 0;
    if ((rc = filter_params(f, p, err)) != SAGA_OK)
        return rc;
    r = PQexecParams(db, count_sql, 6, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        saga_pgerr_note(r);
        rc = saga__error_set(err, SAGA_EDB, "counting sagas to repair: %s",
                             PQerrorMessage(db));
        PQclear(r);
        return rc;
    }
    *count = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    if (nsample > SAGA_REPAIR_BATCH)
        nsample = SAGA_REPAIR_BATCH;
    return nsample > 0 ? next_ids(db, f, NULL, nsample, sample, nsampled, err) : SAGA_OK;
}

int saga_repair_matching(PGconn *db, const saga_repair_req *rq,
                         const saga_repair_filter *f, int limit, saga_repair_each_fn each,
                         void *arg, int *repaired, int *met, int *more, saga_error *err)
{
    char ids[SAGA_REPAIR_BATCH][SAGA_ID_LEN + 1], last[SAGA_ID_LEN + 1] = "";
    saga_repair_result *res = calloc(SAGA_REPAIR_BATCH, sizeof *res);
    int rc = SAGA_OK, n;
    *repaired = *met = *more = 0;
    if (res == NULL)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    while (*met < limit) {
        int want = limit - *met < SAGA_REPAIR_BATCH ? limit - *met : SAGA_REPAIR_BATCH;
        if ((rc = next_ids(db, f, last[0] ? last : NULL, want, ids, &n, err)) !=
                SAGA_OK ||
            n == 0)
            break;
        if ((rc = repair_ids(db, rq, ids, n, or_null(f->status), res, err)) != SAGA_OK)
            break;
        for (int i = 0; i < n; i++) {
            *repaired += res[i].outcome == SAGA_REPAIR_DONE;
            if (each != NULL)
                each(arg, &res[i]);
        }
        *met += n;
        memcpy(last, ids[n - 1], sizeof last);
        if (n < want)
            break;
    }
    if (rc == SAGA_OK && *met >= limit && last[0]) {
        rc = next_ids(db, f, last, 1, ids, &n, err);
        *more = rc == SAGA_OK && n > 0;
    }
    free(res);
    return rc;
}
