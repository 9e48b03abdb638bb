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
static int signals_tx(saga_engine *e)
{
    char(*ids)[SAGA_ID_LEN + 1] = NULL;
    saga_state **states = NULL;
    unsigned char *aside = NULL;
    saga_outbox sent = {0};
    saga_error err = {0};
    PGresult *r = NULL;
    int n = 0, nids = 0, rc;

    if ((rc = saga_store_exec(e->db, "BEGIN", &err)) != SAGA_OK ||
        (rc = saga_signal_claim(e->db, SIGNAL_BATCH, &r, &err)) != SAGA_OK)
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

void saga__engine_process_signals(saga_engine *e)
{
    if (saga__engine_ensure_db(e) != 0)
        return;
    while (!e->stop && signals_tx(e) == SIGNAL_BATCH)
        ;
}
