/* saga_engine_timers.c - where timers fire: sagas whose wake_at is due are
 * claimed (FOR UPDATE SKIP LOCKED, so instances share them), each gets a
 * TIMER event, and a saga whose timer fails alone ISOLATE_TRIES times is
 * taken off the timers with a saga_set_aside event. */
#include "saga_engine_state.h"

/* Sagas held by a bulkhead whose service has free slots again are woken
 * now rather than at the end of their hold. */
void saga__engine_wake_early(saga_engine *e)
{
    char ids[64][37];
    int64_t untils[64];
    saga_error err = {0};
    int n = saga_gate_take_wakeable(e->gate, ids, untils, 64);
    if (n > 0 && saga__engine_ensure_db(e) == 0 &&
        saga_store_wake_early(e->db, ids, untils, n, &err) != SAGA_OK)
        saga_log(SAGA_LOG_WARN, "%s", err.message);
}

/* Set saga_id aside in its own transaction: its timer fails every time it
 * fires (tries times alone, last with reason). Taken off the timers, with
 * a saga_set_aside history line and a dead letter; `sagactl dead replay`
 * or `sagactl retry` puts it back once the cause is repaired. */
static void set_timer_aside(saga_engine *e, const char *saga_id, int tries,
                            const char *reason)
{
    saga_error err = {0};
    saga_outbox none = {0};
    saga_dead_letter dl = {
        .source = "timer", .ref = saga_id, .reason = reason, .attempts = tries};
    int rc = saga_store_exec(e->db, "BEGIN", &err);
    if (rc == SAGA_OK)
        rc = saga_batch_add_timer_set_aside(e->batch, saga_id, reason, &err);
    if (rc == SAGA_OK)
        rc = saga_batch_add_dead_letter(e->batch, &dl, &err);
    if (rc == SAGA_OK) {
        e->pend.dead_letters++;
        saga_tally_note(&e->tally, e->m.dead_letters, 0, 1, "timer", NULL, NULL);
        rc = saga__engine_commit_batch(e, &none, &err);
    }
    saga_outbox_clear(&none);
    if (rc != SAGA_OK) {
        saga__engine_rollback(e);
        saga__engine_warn_limited(&e->set_aside,
                                  "saga %s: its timer fails (%s) and it could not be set "
                                  "aside: %s",
                                  saga_id, reason, err.message);
        return;
    }
    saga_log(SAGA_LOG_WARN,
             "saga %s set aside: its timer failed %d transactions alone: %s (sagactl "
             "dead list)",
             saga_id, tries, reason);
}

/* One transaction of timers: with claim, BEGIN and claim the due ones
 * (ids gets them, *n how many); else load ids[0..*n) (locking them) and
 * fire what is due. Rolled back on failure (err says why). */
static int timers_tx(saga_engine *e, char (*ids)[SAGA_ID_LEN + 1], int *n, int claim,
                     saga_error *err)
{
    saga_state *states[TIMER_CLAIM_LIMIT] = {0};
    unsigned char aside[TIMER_CLAIM_LIMIT];
    saga_outbox sent = {0};
    int rc = SAGA_OK;

    saga_pgerr_clear();
    if (claim) {
        *n = 0;
        if ((rc = saga_store_exec(e->db, "BEGIN", err)) == SAGA_OK &&
            (rc = saga_batch_claim_due(e->db, TIMER_CLAIM_LIMIT, ids, n, err)) ==
                SAGA_OK &&
            *n == 0)
            return saga_store_exec(e->db, "COMMIT", err);
    }
    if (rc == SAGA_OK)
        rc = saga_batch_load(e->db, e->defs, ids, *n, !claim, states, aside, err);
    for (int i = 0; i < *n && rc == SAGA_OK; i++) {
        saga_event ev = {.kind = SAGA_EV_WAKE,
                         .now = saga_now_ms(),
                         .random = next_random(e),
                         .reply = NULL};
        if (states[i] != NULL) {
            saga_state *s = states[i];
            const int64_t stored = s->wake_at, before = s->updated_at;
            rc = saga__engine_apply_one(e, s, &ev, err);
            /* Not applied: the stored timer was early (the store does not
             * move a timer later while it is ahead, saga_batch_sql.c) and
             * nothing was due. Set the exact time, or it fires again. */
            if (rc == SAGA_OK && s->updated_at == before &&
                (s->wake_at = saga_machine_next_wake(s)) != stored)
                rc = saga_batch_add_saga_row(e->batch, s, err);
        }
    }
    if (rc == SAGA_OK)
        rc = saga__engine_commit_batch(e, &sent, err);
    if (rc != SAGA_OK)
        saga__engine_rollback(e);
    else {
        saga__engine_log_set_aside(ids, aside, *n, "their timers cleared");
        saga__engine_produce(e, &sent);
    }
    for (int i = 0; i < TIMER_CLAIM_LIMIT; i++)
        saga_state_free(states[i]);
    saga_outbox_clear(&sent);
    return rc;
}

/* Claim due timers and fire them, in one transaction. When that fails
 * because of a saga in it, each is fired alone, and one that fails alone
 * ISOLATE_TRIES times is set aside (set_timer_aside): the timers of the
 * others are not held up, nor retried in a loop. Returns how many were
 * claimed. */
int saga__engine_process_timers(saga_engine *e)
{
    char(*ids)[SAGA_ID_LEN + 1] = malloc(sizeof *ids * TIMER_CLAIM_LIMIT);
    saga_error err = {0};
    int n = 0, rc;

    if (ids == NULL || saga__engine_ensure_db(e) != 0) {
        free(ids);
        return 0;
    }
    rc = timers_tx(e, ids, &n, 1, &err);
    if (rc != SAGA_OK && (n == 0 || !saga_pgerr_blames_data(e->db, rc))) {
        saga__engine_warn_limited(&e->rolled_timers, "timer batch rolled back: %s",
                                  err.message);
        n = 0;
    } else if (rc != SAGA_OK) {
        saga_log(SAGA_LOG_WARN,
                 "timer batch of %d rolled back (%s); firing them one by one", n,
                 err.message);
        for (int k = 0; k < n; k++) {
            int one = 1, tries = 0;
            do {
                memset(&err, 0, sizeof err);
                rc = timers_tx(e, &ids[k], &one, 0, &err);
                if (rc != SAGA_OK && !saga_pgerr_blames_data(e->db, rc)) {
                    saga__engine_warn_limited(&e->rolled_timers,
                                              "timer batch rolled back: %s", err.message);
                    free(ids);
                    return 0;
                }
            } while (rc != SAGA_OK && ++tries < ISOLATE_TRIES);
            if (rc != SAGA_OK)
                set_timer_aside(e, ids[k], tries, err.message);
        }
    }
    free(ids);
    return n;
}
