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

/* The loaded sagas a delivery works on. */
typedef struct loaded {
    char (*ids)[SAGA_ID_LEN + 1];
    saga_state **states;
    int n;
} loaded;

static saga_state *loaded_saga(const loaded *l, const char *id)
{
    int k = saga__engine_find_id(l->ids, l->n, id);
    return k >= 0 ? l->states[k] : NULL;
}

/* Row i of r: a child's end, to its parent. */
static int tell_parent(saga_engine *e, PGresult *r, int i, const loaded *l,
                       saga_error *err)
{
    const char *child = PQgetvalue(r, i, SAGA_CH_CHILD_ID), *why = NULL;
    saga_state *s = loaded_saga(l, PQgetvalue(r, i, SAGA_CH_PARENT_ID));
    saga_child_end how;
    json_t *result;
    int applied, rc;
    if (s == NULL)
        return saga_children_later(e->db, child, CHILD_LATER_S, err);
    if (saga_child_end_parse(PQgetvalue(r, i, SAGA_CH_STATUS), &how) != 0)
        return saga_children_told(e->db, child, err);
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
        rc = apply(e, s, &ev, &why, &applied, err);
    }
    json_decref(result);
    if (rc != SAGA_OK)
        return rc;
    /* Not waiting for it (an end it no longer needs): told all the same;
     * if it comes to wait, its request tells it again. */
    if (applied != SAGA_APPLIED)
        saga_log(SAGA_LOG_DEBUG, "child %s's end (%s) not taken by saga %s: %s", child,
                 saga_child_end_name(how), s->id, why ? why : "");
    return saga_children_told(e->db, child, err);
}

/* Row i of r: a parent's undo request, to its child. */
static int undo_child(saga_engine *e, PGresult *r, int i, const loaded *l,
                      saga_error *err)
{
    const char *child = PQgetvalue(r, i, SAGA_CH_CHILD_ID), *why = NULL;
    saga_state *s = loaded_saga(l, child);
    saga_event ev = {.kind = SAGA_EV_PARENT_COMPENSATE, .now = saga_now_ms()};
    int applied, rc;
    if (s == NULL)
        /* Never started (its start refused, or the step was skipped): its
         * end, as the link says, goes to the parent again. */
        return saga_children_undo_taken(e->db, child,
                                        PQgetisnull(r, i, SAGA_CH_STATUS)
                                            ? "compensated"
                                            : PQgetvalue(r, i, SAGA_CH_STATUS),
                                        NULL, err);
    ev.random = next_random(e);
    if ((rc = apply(e, s, &ev, &why, &applied, err)) != SAGA_OK)
        return rc;
    if (applied == SAGA_APPLIED || s->status == SAGA_ST_COMPENSATING)
        return saga_children_undo_taken(e->db, child, NULL, NULL,
                                        err); /* its end tells */
    if (applied == SAGA_REJECTED) {
        json_t *j = json_pack("{s:s, s:s}", "saga_id", s->id, "error",
                              why ? why : "it cannot be undone");
        char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        saga_log(SAGA_LOG_WARN, "child saga %s cannot be undone for its parent: %s",
                 s->id, why ? why : "");
        rc = saga_children_undo_taken(e->db, child, "uncompensable", text ? text : "{}",
                                      err);
        free(text);
        json_decref(j);
        return rc;
    }
    if (s->status == SAGA_ST_COMPENSATED || s->status == SAGA_ST_RESOLVED)
        return saga_children_undo_taken(
            e->db, child, s->status == SAGA_ST_COMPENSATED ? "compensated" : "resolved",
            NULL, err);
    /* Running past its pivot, or stuck: once it ends, or is repaired. */
    return saga_children_later(e->db, child, CHILD_LATER_S, err);
}

/* One transaction: claim up to limit rows (undo requests, or ends), load
 * the sagas they are for, deliver each, commit. Returns how many were
 * claimed, -1 on failure (rolled back). */
static int deliver_tx(saga_engine *e, int undo, int limit, saga_error *failed)
{
    loaded l = {NULL, NULL, 0};
    saga_outbox sent = {0};
    saga_error err = {0};
    PGresult *r = NULL;
    int n = 0, rc;

    if ((rc = saga_store_exec(e->db, "BEGIN", &err)) == SAGA_OK)
        rc = undo ? saga_children_claim_undo(e->db, limit, &r, &err)
                  : saga_children_claim_ended(e->db, limit, &r, &err);
    if (rc == SAGA_OK && (n = PQntuples(r)) > 0)
        rc = load(e, r, undo ? SAGA_CH_CHILD_ID : SAGA_CH_PARENT_ID, &l.ids, &l.states,
                  &l.n, &err);
    for (int i = 0; i < n && rc == SAGA_OK; i++)
        rc = undo ? undo_child(e, r, i, &l, &err) : tell_parent(e, r, i, &l, &err);
    if (rc == SAGA_OK)
        rc = saga__engine_commit_batch(e, &sent, &err);
    if (rc == SAGA_OK) {
        saga__engine_produce(e, &sent);
    } else {
        saga__engine_rollback(e);
        saga__engine_warn_limited(
            &e->rolled_starts, "%s rolled back: %s",
            undo ? "undo requests to child sagas" : "child sagas' ends", err.message);
        if (failed != NULL)
            *failed = err;
        n = -1;
    }
    for (int k = 0; l.states != NULL && k < l.n; k++)
        saga_state_free(l.states[k]);
    free(l.states);
    free(l.ids);
    PQclear(r);
    saga_outbox_clear(&sent);
    return n;
}

/* Failed deliveries of one link before it is set aside. */
#define CHILD_TRIES 5

/* The first row a claim would take fails its transaction alone (its data:
 * say, a result over the output limit): put it off a minute, in a
 * transaction of its own, so that the others go through; at its fifth
 * failure it is set aside as a dead letter with why (DESIGN rule 9). */
static void put_off_first(saga_engine *e, int undo, const saga_error *why)
{
    saga_outbox none = {0};
    saga_error err = {0};
    PGresult *r = NULL;
    int failures = 0, rc = saga_store_exec(e->db, "BEGIN", &err);
    if (rc == SAGA_OK)
        rc = undo ? saga_children_claim_undo(e->db, 1, &r, &err)
                  : saga_children_claim_ended(e->db, 1, &r, &err);
    if (rc == SAGA_OK && PQntuples(r) == 1) {
        const char *child = PQgetvalue(r, 0, SAGA_CH_CHILD_ID);
        rc = saga_children_failed(e->db, child, 60, &failures, &err);
        if (rc == SAGA_OK && failures >= CHILD_TRIES) {
            char reason[700];
            /* The link as it stood: what an operator needs to deliver it by
             * hand (a retry of the parent's step tells it again). */
            json_t *j = json_pack(
                "{s:s, s:s, s:s, s:s?, s:s?}", "child_id", child, "parent_id",
                PQgetvalue(r, 0, SAGA_CH_PARENT_ID), "parent_step",
                PQgetvalue(r, 0, SAGA_CH_PARENT_STEP), "ended_status",
                PQgetisnull(r, 0, SAGA_CH_STATUS) ? NULL
                                                  : PQgetvalue(r, 0, SAGA_CH_STATUS),
                "result",
                PQgetisnull(r, 0, SAGA_CH_RESULT) ? NULL
                                                  : PQgetvalue(r, 0, SAGA_CH_RESULT));
            char *row = j ? json_dumps(j, JSON_COMPACT) : NULL;
            saga_dead_letter dl = {.source = "child_link",
                                   .ref = child,
                                   .payload = row ? row : "{}",
                                   .payload_len = row ? strlen(row) : 2,
                                   .reason = reason,
                                   .attempts = failures};
            json_decref(j);
            snprintf(reason, sizeof reason, "%s of child saga %s to parent %s: %.500s",
                     undo ? "the undo request" : "the end", child,
                     PQgetvalue(r, 0, SAGA_CH_PARENT_ID), why->message);
            rc = saga_children_give_up(e->db, child, undo, &err);
            if (rc == SAGA_OK)
                rc = saga_batch_add_dead_letter(e->batch, &dl, &err);
            if (rc == SAGA_OK)
                e->pend.dead_letters++;
            free(row);
        }
        if (rc == SAGA_OK)
            saga_log(SAGA_LOG_WARN,
                     "%s of child saga %s (parent %s) fails its transaction (%s); %s",
                     undo ? "the undo request" : "the end", child,
                     PQgetvalue(r, 0, SAGA_CH_PARENT_ID), why->message,
                     failures >= CHILD_TRIES ? "set aside (sagactl dead list)"
                                             : "tried again in a minute");
    }
    if (rc == SAGA_OK)
        rc = saga__engine_commit_batch(e, &none, &err);
    if (rc != SAGA_OK)
        saga__engine_rollback(e);
    PQclear(r);
    saga_outbox_clear(&none);
}

/* Deliver in batches; a batch that fails is retried one row at a time,
 * and a row that fails alone is put off. */
static void deliver(saga_engine *e, int undo)
{
    int n;
    saga_error failed = {0};
    while (!e->stop && (n = deliver_tx(e, undo, CHILD_BATCH, &failed)) == CHILD_BATCH)
        ;
    if (n >= 0 || !saga_pgerr_blames_data(e->db, SAGA_EDB))
        return;
    for (int k = 0; k < CHILD_BATCH && !e->stop; k++) {
        saga_pgerr_clear();
        n = deliver_tx(e, undo, 1, &failed);
        if (n < 0 && saga_pgerr_blames_data(e->db, SAGA_EDB))
            put_off_first(e, undo, &failed);
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
