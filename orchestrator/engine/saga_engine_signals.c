/* saga_engine_signals.c - signals for wait steps: each signal whose saga
 * now waits for it is applied (the machine ends the wait) and closed as
 * delivered, in one transaction with what it caused; one whose saga ended
 * without waiting for it is closed as discarded. A signal that came early
 * stays until its saga waits (saga_signal_claim finds it then). */
#include <stdlib.h>
#include <string.h>

#include "saga_engine_state.h"
#include "saga_shared.h"
#include "saga_signal.h"

#define SIGNAL_BATCH 100

static int cmp_id(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* How long a signal whose saga cannot be loaded now is left alone. */
#define SIGNAL_DEFER_S 60

/* One transaction: claim, load the sagas, apply, close, commit. Returns
 * how many signals were claimed (-1 on failure, rolled back); every one
 * claimed is closed or deferred, so the next claim moves on. */
static int signals_tx(saga_engine *e, int limit, saga_error *failed)
{
    char(*ids)[SAGA_ID_LEN + 1] = NULL;
    saga_state **states = NULL;
    unsigned char *aside = NULL;
    saga_outbox sent = {0};
    saga_error err = {0};
    PGresult *r = NULL;
    int n = 0, nids = 0, rc;

    if ((rc = saga_store_exec(e->db, "BEGIN", &err)) != SAGA_OK ||
        (rc = saga_signal_claim(e->db, limit, &r, &err)) != SAGA_OK)
        goto out;
    if ((n = PQntuples(r)) == 0) {
        rc = saga_store_exec(e->db, "COMMIT", &err);
        goto out;
    }
    ids = calloc((size_t)n, sizeof *ids);
    states = calloc((size_t)n, sizeof *states);
    aside = calloc((size_t)n, 1);
    if (ids == NULL || states == NULL || aside == NULL) {
        rc = saga__error_set(&err, SAGA_ENOMEM, "out of memory");
        goto out;
    }
    /* The sagas, each once, in id order (as every loader locks them). */
    for (int i = 0; i < n; i++)
        snprintf(ids[i], SAGA_ID_LEN + 1, "%s", PQgetvalue(r, i, SAGA_SIG_SAGA_ID));
    qsort(ids, (size_t)n, sizeof *ids, cmp_id);
    for (int i = 0; i < n; i++)
        if (nids == 0 || strcmp(ids[nids - 1], ids[i]) != 0)
            memmove(ids[nids++], ids[i], SAGA_ID_LEN + 1);
    if ((rc = saga_batch_load(e->db, e->defs, ids, nids, 0, states, aside, &err)) !=
        SAGA_OK)
        goto out;
    for (int i = 0; i < n && rc == SAGA_OK; i++) {
        const char *sid = PQgetvalue(r, i, SAGA_SIG_SAGA_ID);
        saga_state *s = NULL;
        saga_actions acts = {0};
        const char *why = NULL, *outcome = NULL;
        char discarded[160];
        for (int k = 0; k < nids && s == NULL; k++)
            if (strcmp(ids[k], sid) == 0)
                s = states[k];
        if (s == NULL) {
            /* Set aside (its definition cannot be read): left for later,
             * not claimed again at once. */
            rc = saga_signal_defer(e->db, sid, PQgetvalue(r, i, SAGA_SIG_NAME),
                                   PQgetvalue(r, i, SAGA_SIG_ID), SIGNAL_DEFER_S, &err);
            continue;
        }
        {
            json_t *payload =
                saga__json_from_pg(PQgetvalue(r, i, SAGA_SIG_PAYLOAD), 0, NULL);
            saga_event ev = {.kind = SAGA_EV_SIGNAL,
                             .now = saga_now_ms(),
                             .random = next_random(e),
                             .signal = PQgetvalue(r, i, SAGA_SIG_NAME),
                             .signal_id = PQgetvalue(r, i, SAGA_SIG_ID),
                             .output = payload,
                             .signal_failed = PQgetvalue(r, i, SAGA_SIG_FAILED)[0] == 't',
                             .reason = PQgetisnull(r, i, SAGA_SIG_REASON)
                                           ? NULL
                                           : PQgetvalue(r, i, SAGA_SIG_REASON)};
            int applied = saga_machine_apply(s, &ev, &acts, &why);
            json_decref(payload);
            if (applied == SAGA_APPLIED) {
                rc = saga__engine_gate_and_count(e, s, &acts, ev.now, &err);
                if (rc == SAGA_OK)
                    rc = saga_batch_add(e->batch, s, &acts, 0, &err);
                e->batch_events++;
                outcome = "delivered";
            } else if (applied == SAGA_ENOMEM) {
                rc = saga__error_set(&err, SAGA_ENOMEM, "out of memory");
            } else if (s->status != SAGA_ST_RUNNING) {
                snprintf(discarded, sizeof discarded,
                         "discarded: the saga is %s; it did not wait for this signal",
                         saga_status_name(s->status));
                outcome = discarded;
            }
        }
        saga_actions_clear(&acts);
        if (rc == SAGA_OK && outcome != NULL)
            rc = saga_signal_done(e->db, sid, PQgetvalue(r, i, SAGA_SIG_NAME),
                                  PQgetvalue(r, i, SAGA_SIG_ID), outcome, &err);
        else if (rc == SAGA_OK) /* the machine would not take it now (not waiting) */
            rc = saga_signal_defer(e->db, sid, PQgetvalue(r, i, SAGA_SIG_NAME),
                                   PQgetvalue(r, i, SAGA_SIG_ID), 1, &err);
    }
    if (rc == SAGA_OK)
        rc = saga__engine_commit_batch(e, &sent, &err);
    if (rc == SAGA_OK)
        saga__engine_produce(e, &sent);
out:
    if (rc != SAGA_OK) {
        saga__engine_rollback(e);
        saga__engine_warn_limited(&e->rolled_starts, "signals rolled back: %s",
                                  err.message);
        if (failed != NULL)
            *failed = err;
        n = -1;
    }
    for (int k = 0; states != NULL && k < nids; k++)
        saga_state_free(states[k]);
    free(states);
    free(aside);
    free(ids);
    PQclear(r);
    saga_outbox_clear(&sent);
    return n;
}

/* The oldest deliverable signal, alone, failed its transaction because of
 * its data (say, a payload over the output limit): close it as refused,
 * with why, so that it cannot fail every later batch (one try alone, as
 * for start requests). */
static void refuse_oldest(saga_engine *e, const saga_error *why)
{
    saga_error err = {0};
    PGresult *r = NULL;
    char outcome[600];
    int rc = saga_store_exec(e->db, "BEGIN", &err);
    if (rc == SAGA_OK)
        rc = saga_signal_claim(e->db, 1, &r, &err);
    if (rc == SAGA_OK && PQntuples(r) == 1) {
        snprintf(outcome, sizeof outcome, "refused: %s", why->message);
        rc = saga_signal_done(e->db, PQgetvalue(r, 0, SAGA_SIG_SAGA_ID),
                              PQgetvalue(r, 0, SAGA_SIG_NAME),
                              PQgetvalue(r, 0, SAGA_SIG_ID), outcome, &err);
        if (rc == SAGA_OK)
            saga_log(SAGA_LOG_WARN, "signal %s of saga %s refused: %s",
                     PQgetvalue(r, 0, SAGA_SIG_NAME), PQgetvalue(r, 0, SAGA_SIG_SAGA_ID),
                     why->message);
    }
    if (rc == SAGA_OK)
        rc = saga_store_exec(e->db, "COMMIT", &err);
    if (rc != SAGA_OK)
        saga__engine_rollback(e);
    PQclear(r);
}

void saga__engine_process_signals(saga_engine *e)
{
    saga_error failed = {0};
    int n;
    if (saga__engine_ensure_db(e) != 0)
        return;
    while (!e->stop && (n = signals_tx(e, SIGNAL_BATCH, &failed)) == SIGNAL_BATCH)
        ;
    /* A batch failed because of a signal in it: one at a time, so that the
     * others go through and the one to blame is refused. */
    for (int k = 0;
         n < 0 && k < SIGNAL_BATCH && !e->stop && saga_pgerr_blames_data(e->db, SAGA_EDB);
         k++) {
        if ((n = signals_tx(e, 1, &failed)) < 0 &&
            saga_pgerr_blames_data(e->db, SAGA_EDB)) {
            refuse_oldest(e, &failed);
            n = -1;
        } else if (n <= 0) {
            break;
        }
    }
}
