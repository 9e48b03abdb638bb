/* saga_engine_children.c - what parent and child sagas tell each other
 * (saga.saga_child, filled by the batch writer), delivered each in one
 * transaction with what it causes: a child's end to its parent (the
 * machine ends the child step, or its undoing), and a parent's undo
 * request to its child (the machine undoes the child). A request the
 * child cannot take yet (running past its pivot, or stuck) is tried again
 * later; one it can never take (it completed past its pivot) is told to
 * the parent as such. */
#include <stdlib.h>
#include <string.h>

#include "saga_child.h"
#include "saga_children.h"
#include "saga_engine_state.h"
#include "saga_shared.h"

#define CHILD_BATCH 100
/* A saga that cannot be loaded now, or a child that must end first. */
#define CHILD_LATER_S 5

/* Load the sagas whose ids are in column col of r, each once, in id
 * order; *ids and *states are the caller's (free them, and the states). */
static int load(saga_engine *e, PGresult *r, int col, char (**ids)[SAGA_ID_LEN + 1],
                saga_state ***states, int *nids, saga_error *err)
{
    int n = PQntuples(r);
    unsigned char *aside = calloc((size_t)n, 1);
    int rc;
    *ids = calloc((size_t)n, sizeof **ids);
    *states = calloc((size_t)n, sizeof **states);
    if (*ids == NULL || *states == NULL || aside == NULL) {
        free(aside);
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++)
        snprintf((*ids)[i], SAGA_ID_LEN + 1, "%s", PQgetvalue(r, i, col));
    *nids = saga__engine_sort_unique(*ids, n);
    rc = saga_batch_load(e->db, e->defs, *ids, *nids, 0, *states, aside, err);
    free(aside);
    return rc;
}

/* Apply ev to s and, when it moved, record the transition. */
static int apply(saga_engine *e, saga_state *s, saga_event *ev, const char **why,
                 int *applied, saga_error *err)
{
    saga_actions acts = {0};
    int rc = SAGA_OK, a = saga_machine_apply(s, ev, &acts, why);
    *applied = a;
    if (a == SAGA_APPLIED) {
        rc = saga__engine_gate_and_count(e, s, &acts, ev->now, err);
        if (rc == SAGA_OK)
            rc = saga_batch_add(e->batch, s, &acts, 0, err);
        e->batch_events++;
    } else if (a == SAGA_ENOMEM) {
        rc = saga__error_set(err, SAGA_ENOMEM, "out of memory");
    }
    saga_actions_clear(&acts);
    return rc;
}

/* Children's ends to their parents. Returns how many were claimed, -1 on
 * failure (rolled back). */
static int tell_parents(saga_engine *e, int limit)
{
    char(*ids)[SAGA_ID_LEN + 1] = NULL;
    saga_state **states = NULL;
    saga_outbox sent = {0};
    saga_error err = {0};
    PGresult *r = NULL;
    int n = 0, nids = 0, rc;

    if ((rc = saga_store_exec(e->db, "BEGIN", &err)) != SAGA_OK ||
        (rc = saga_children_claim_ended(e->db, limit, &r, &err)) != SAGA_OK)
        goto out;
    if ((n = PQntuples(r)) > 0)
        rc = load(e, r, SAGA_CH_PARENT_ID, &ids, &states, &nids, &err);
    for (int i = 0; i < n && rc == SAGA_OK; i++) {
        const char *child = PQgetvalue(r, i, SAGA_CH_CHILD_ID);
        int k = saga__engine_find_id(ids, nids, PQgetvalue(r, i, SAGA_CH_PARENT_ID));
        saga_child_end how;
        json_t *result;
        const char *why = NULL;
        int applied;
        if (k < 0 || states[k] == NULL) {
            rc = saga_children_later(e->db, child, CHILD_LATER_S, &err);
            continue;
        }
        if (saga_child_end_parse(PQgetvalue(r, i, SAGA_CH_STATUS), &how) != 0) {
            rc = saga_children_told(e->db, child, &err);
            continue;
        }
        result = PQgetisnull(r, i, SAGA_CH_RESULT)
                     ? NULL
                     : saga__json_from_pg(PQgetvalue(r, i, SAGA_CH_RESULT), 0, NULL);
        {
            saga_event ev = {.kind = SAGA_EV_CHILD_ENDED,
                             .now = saga_now_ms(),
                             .random = next_random(e),
                             .step = atoi(PQgetvalue(r, i, SAGA_CH_PARENT_STEP)),
                             .child_end = (int)how,
                             .output = result};
            rc = apply(e, states[k], &ev, &why, &applied, &err);
        }
        json_decref(result);
        /* Not waiting for it (an end it no longer needs): told all the same;
         * if it comes to wait, its request tells it again. */
        if (rc == SAGA_OK && applied != SAGA_APPLIED)
            saga_log(SAGA_LOG_DEBUG, "child %s's end (%s) not taken by saga %s: %s",
                     child, saga_child_end_name(how), states[k]->id, why ? why : "");
        if (rc == SAGA_OK)
            rc = saga_children_told(e->db, child, &err);
    }
    if (rc == SAGA_OK)
        rc = saga__engine_commit_batch(e, &sent, &err);
    if (rc == SAGA_OK)
        saga__engine_produce(e, &sent);
out:
    if (rc != SAGA_OK) {
        saga__engine_rollback(e);
        saga__engine_warn_limited(&e->rolled_starts, "child sagas' ends rolled back: %s",
                                  err.message);
        n = -1;
    }
    for (int k = 0; states != NULL && k < nids; k++)
        saga_state_free(states[k]);
    free(states);
    free(ids);
    PQclear(r);
    saga_outbox_clear(&sent);
    return n;
}

/* Parents' undo requests to their children. As tell_parents. */
static int undo_children(saga_engine *e, int limit)
{
    char(*ids)[SAGA_ID_LEN + 1] = NULL;
    saga_state **states = NULL;
    saga_outbox sent = {0};
    saga_error err = {0};
    PGresult *r = NULL;
    int n = 0, nids = 0, rc;

    if ((rc = saga_store_exec(e->db, "BEGIN", &err)) != SAGA_OK ||
        (rc = saga_children_claim_undo(e->db, limit, &r, &err)) != SAGA_OK)
        goto out;
    if ((n = PQntuples(r)) > 0)
        rc = load(e, r, SAGA_CH_CHILD_ID, &ids, &states, &nids, &err);
    for (int i = 0; i < n && rc == SAGA_OK; i++) {
        const char *child = PQgetvalue(r, i, SAGA_CH_CHILD_ID), *why = NULL;
        int k = saga__engine_find_id(ids, nids, child), applied;
        saga_state *s = k >= 0 ? states[k] : NULL;
        saga_event ev = {
            .kind = SAGA_EV_PARENT_COMPENSATE, .now = saga_now_ms(), .random = 0.5};
        if (s == NULL) {
            /* Never started (its start refused, or the step was skipped):
             * its end, as the link says, goes to the parent again. */
            rc = saga_children_undo_taken(e->db, child,
                                          PQgetisnull(r, i, SAGA_CH_STATUS)
                                              ? "compensated"
                                              : PQgetvalue(r, i, SAGA_CH_STATUS),
                                          NULL, &err);
            continue;
        }
        ev.random = next_random(e);
        rc = apply(e, s, &ev, &why, &applied, &err);
        if (rc != SAGA_OK)
            break;
        if (applied == SAGA_APPLIED || s->status == SAGA_ST_COMPENSATING) {
            /* Its end will tell the parent. */
            rc = saga_children_undo_taken(e->db, child, NULL, NULL, &err);
        } else if (applied == SAGA_REJECTED) {
            char result[600];
            json_t *j = json_pack("{s:s, s:s}", "saga_id", s->id, "error",
                                  why ? why : "it cannot be undone");
            char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
            snprintf(result, sizeof result, "%s", text ? text : "{}");
            free(text);
            json_decref(j);
            saga_log(SAGA_LOG_WARN, "child saga %s cannot be undone for its parent: %s",
                     s->id, why ? why : "");
            rc = saga_children_undo_taken(e->db, child, "uncompensable", result, &err);
        } else if (s->status == SAGA_ST_COMPENSATED || s->status == SAGA_ST_RESOLVED) {
            rc = saga_children_undo_taken(e->db, child,
                                          s->status == SAGA_ST_COMPENSATED ? "compensated"
                                                                           : "resolved",
                                          NULL, &err);
        } else {
            /* Running past its pivot, or stuck: once it ends, or is
             * repaired. */
            rc = saga_children_later(e->db, child, CHILD_LATER_S, &err);
        }
    }
    if (rc == SAGA_OK)
        rc = saga__engine_commit_batch(e, &sent, &err);
    if (rc == SAGA_OK)
        saga__engine_produce(e, &sent);
out:
    if (rc != SAGA_OK) {
        saga__engine_rollback(e);
        saga__engine_warn_limited(&e->rolled_starts,
                                  "undo requests to child sagas rolled back: %s",
                                  err.message);
        n = -1;
    }
    for (int k = 0; states != NULL && k < nids; k++)
        saga_state_free(states[k]);
    free(states);
    free(ids);
    PQclear(r);
    saga_outbox_clear(&sent);
    return n;
}

/* The first row a claim would take fails its transaction alone (its data:
 * say, a result over the output limit): put it off for a minute, in a
 * transaction of its own, so that the others go through (DESIGN rule 9). */
static void put_off_first(saga_engine *e, int undo)
{
    saga_error err = {0};
    PGresult *r = NULL;
    int rc = saga_store_exec(e->db, "BEGIN", &err);
    if (rc == SAGA_OK)
        rc = undo ? saga_children_claim_undo(e->db, 1, &r, &err)
                  : saga_children_claim_ended(e->db, 1, &r, &err);
    if (rc == SAGA_OK && PQntuples(r) == 1) {
        rc = saga_children_later(e->db, PQgetvalue(r, 0, SAGA_CH_CHILD_ID), 60, &err);
        if (rc == SAGA_OK)
            saga_log(SAGA_LOG_WARN,
                     "%s of child saga %s (parent %s) fails its transaction; tried "
                     "again in a minute",
                     undo ? "the undo request" : "the end", PQgetvalue(r, 0, 0),
                     PQgetvalue(r, 0, SAGA_CH_PARENT_ID));
    }
    if (rc == SAGA_OK)
        rc = saga_store_exec(e->db, "COMMIT", &err);
    if (rc != SAGA_OK)
        saga__engine_rollback(e);
    PQclear(r);
}

/* Deliver in batches; a batch that fails is retried one row at a time,
 * and a row that fails alone is put off. */
static void deliver(saga_engine *e, int undo)
{
    int n;
    while (!e->stop && (n = undo ? undo_children(e, CHILD_BATCH)
                                 : tell_parents(e, CHILD_BATCH)) == CHILD_BATCH)
        ;
    if (n >= 0 || !saga_pgerr_blames_data(e->db, SAGA_EDB))
        return;
    for (int k = 0; k < CHILD_BATCH && !e->stop; k++) {
        saga_pgerr_clear();
        n = undo ? undo_children(e, 1) : tell_parents(e, 1);
        if (n < 0 && saga_pgerr_blames_data(e->db, SAGA_EDB))
            put_off_first(e, undo);
        else if (n <= 0)
            break;
    }
}

void saga__engine_process_children(saga_engine *e)
{
    if (saga__engine_ensure_db(e) != 0)
        return;
    e->children_due = 0;
    deliver(e, 1);
    deliver(e, 0);
}
