/* saga_engine_starts.c - where start requests become sagas: rows of
 * saga.start_request (written by the client and sagactl) are claimed, the
 * machine starts each saga, and the request is marked done with its saga
 * id or the reason it was refused. A request that fails alone
 * ISOLATE_TRIES times is set aside as a dead letter. */
#include "saga_engine_state.h"
#include "saga_start_request.h"
#include "saga_shared.h"

/* A start request that cannot be started without failing its transaction
 * (tries times alone, last with reason): marked processed with the
 * reason, and a dead letter with its input, in its own transaction. */
static void set_request_aside(saga_engine *e, const char *id, int tries,
                              const char *reason)
{
    saga_error err = {0};
    saga_outbox none = {0};
    char why[600];
    PGresult *r = NULL;
    int rc = saga_store_exec(e->db, "BEGIN", &err);
    snprintf(why, sizeof why, "set aside after %d failed transactions: %s", tries,
             reason);
    if (rc == SAGA_OK)
        rc = saga_store_lock_start_request(e->db, id, &r, &err);
    if (rc == SAGA_OK && PQntuples(r) == 1) {
        const char *input = PQgetvalue(r, 0, SAGA_SR_INPUT);
        saga_dead_letter dl = {.source = "start_request",
                               .ref = id,
                               .payload = input,
                               .payload_len = strlen(input),
                               .reason = reason,
                               .attempts = tries};
        rc = saga_batch_add_request_done(e->batch, id, why, &err);
        if (rc == SAGA_OK)
            rc = saga_batch_add_dead_letter(e->batch, &dl, &err);
        if (rc == SAGA_OK) {
            e->pend.dead_letters++;
            saga_tally_note(&e->tally, e->m.dead_letters, 0, 1, "start_request", NULL,
                            NULL);
        }
    }
    if (rc == SAGA_OK)
        rc = saga__engine_commit_batch(e, &none, &err);
    PQclear(r);
    saga_outbox_clear(&none);
    if (rc != SAGA_OK) {
        saga__engine_rollback(e);
        saga__engine_warn_limited(
            &e->set_aside, "start request %s fails (%s) and could not be set aside: %s",
            id, reason, err.message);
        return;
    }
    saga_log(SAGA_LOG_WARN, "start request %s %s (sagactl dead list)", id, why);
}

/* What one transaction of start requests works on (on the heap: with the
 * problems' text it is too big for the stack). */
typedef struct start_work {
    saga_state *states[START_BATCH];
    const char *keys[START_BATCH];
    const char *callers[START_BATCH]; /* requested_by of states[i] */
    const char *business_keys[START_BATCH];
    char problems[START_BATCH][600];
    char existing[START_BATCH][SAGA_ID_LEN + 1];
    int which[START_BATCH];                     /* request row of states[i] */
    const saga_definition *latest[START_BATCH]; /* definition of request row i */
    saga_actions acts_of[START_BATCH];
    char taken[START_BATCH][SAGA_ID_LEN + 1]; /* the request ids read */
} start_work;

/* One transaction: turn pending start requests (only only_id, unless
 * NULL) into sagas, each with its first command. *n is how many requests
 * were read (their ids in w->taken). Rolled back on failure. */
static int start_tx(saga_engine *e, start_work *w, const char *only_id, int *n,
                    saga_error *err)
{
    saga_outbox sent = {0};
    PGresult *r = NULL;
    int nstates = 0, rc;

    *n = 0;
    saga_pgerr_clear();
    if ((rc = saga_store_exec(e->db, "BEGIN", err)) != SAGA_OK)
        goto out;
    if ((rc = saga_store_claim_start_requests(e->db, only_id, START_BATCH, &r, err)) !=
        SAGA_OK)
        goto out;
    *n = PQntuples(r);
    if (*n == 0) {
        rc = saga_store_exec(e->db, "COMMIT", err);
        goto out;
    }
    for (int i = 0; i < *n; i++)
        snprintf(w->taken[i], sizeof w->taken[i], "%s", PQgetvalue(r, i, SAGA_SR_ID));
    for (int i = 0; i < *n && rc == SAGA_OK; i++) {
        const char *id = PQgetvalue(r, i, SAGA_SR_ID),
                   *name = PQgetvalue(r, i, SAGA_SR_NAME);
        const saga_definition *def = NULL;
        saga_error derr = {0};
        w->problems[i][0] = '\0';
        /* The latest version of each name once per batch, not per request. */
        for (int k = 0; k < i && def == NULL; k++)
            if (w->latest[k] != NULL && strcmp(PQgetvalue(r, k, SAGA_SR_NAME), name) == 0)
                def = w->latest[k];
        if (def == NULL &&
            saga_store_get_definition(e->db, e->defs, name, 0, &def, &derr) != SAGA_OK) {
            def = NULL;
            snprintf(w->problems[i], sizeof w->problems[i], "%s", derr.message);
        }
        w->latest[i] = def;
        if (def != NULL) {
            json_t *input = saga__json_from_pg(PQgetvalue(r, i, SAGA_SR_INPUT), 0, NULL);
            saga_state *s = saga_state_new(def, id, input);
            saga_actions acts = {0};
            saga_event ev = {
                .kind = SAGA_EV_START, .now = saga_now_ms(), .random = next_random(e)};
            json_decref(input);
            if (s != NULL && !PQgetisnull(r, i, SAGA_SR_PARENT_ID)) {
                /* A child saga: it tells its parent when it ends. */
                snprintf(s->parent_id, sizeof s->parent_id, "%s",
                         PQgetvalue(r, i, SAGA_SR_PARENT_ID));
                s->parent_step = atoi(PQgetvalue(r, i, SAGA_SR_PARENT_STEP));
            }
            /* The caller's trace goes on; without one, a new trace. */
            if (s != NULL)
                saga_tracing_start(PQgetisnull(r, i, SAGA_SR_TRACEPARENT)
                                       ? NULL
                                       : PQgetvalue(r, i, SAGA_SR_TRACEPARENT),
                                   s->traceparent, sizeof s->traceparent);
            if (s == NULL || saga_machine_apply(s, &ev, &acts, NULL) != SAGA_APPLIED) {
                saga_state_free(s);
                saga_actions_clear(&acts);
                rc = saga__error_set(err, SAGA_ENOMEM, "out of memory starting saga %s",
                                     id);
            } else {
                /* The actions are recorded once we know the saga is new. */
                w->acts_of[nstates] = acts;
                w->keys[nstates] =
                    PQgetisnull(r, i, SAGA_SR_KEY) ? NULL : PQgetvalue(r, i, SAGA_SR_KEY);
                w->callers[nstates] = PQgetvalue(r, i, SAGA_SR_BY);
                w->business_keys[nstates] = PQgetisnull(r, i, SAGA_SR_BUSINESS_KEY)
                                                ? NULL
                                                : PQgetvalue(r, i, SAGA_SR_BUSINESS_KEY);
                w->which[nstates] = i;
                w->states[nstates++] = s;
            }
        }
    }
    if (rc == SAGA_OK && nstates > 0)
        rc = saga_batch_insert_new(e->db, w->states, w->keys, w->callers,
                                   w->business_keys, nstates, w->existing, err);
    for (int k = 0; k < nstates && rc == SAGA_OK; k++) {
        if (w->existing[k][0] != '\0') {
            snprintf(w->problems[w->which[k]], sizeof w->problems[w->which[k]],
                     "idempotency key already used by saga %s", w->existing[k]);
            continue;
        }
        saga_tally_note(&e->tally, e->m.sagas_started, 0, 1, w->states[k]->def->name,
                        NULL, NULL);
        {
            int64_t wake = w->states[k]->wake_at;
            rc = saga__engine_gate_and_count(e, w->states[k], &w->acts_of[k],
                                             saga_now_ms(), err);
            if (rc == SAGA_OK)
                rc = saga_batch_add(e->batch, w->states[k], &w->acts_of[k], 1, err);
            /* Held by the gate: the row inserted above has the old timer. */
            if (rc == SAGA_OK && w->states[k]->wake_at != wake)
                rc = saga_batch_add_saga_row(e->batch, w->states[k], err);
        }
        e->batch_events++;
    }
    for (int i = 0; i < *n && rc == SAGA_OK; i++)
        rc = saga_batch_add_request_done(e->batch, PQgetvalue(r, i, SAGA_SR_ID),
                                         w->problems[i][0] ? w->problems[i] : NULL, err);
    if (rc == SAGA_OK)
        rc = saga__engine_commit_batch(e, &sent, err);
    if (rc == SAGA_OK) {
        for (int i = 0; i < *n; i++)
            if (w->problems[i][0])
                saga_log(SAGA_LOG_WARN, "start request %s (%s) rejected: %s",
                         PQgetvalue(r, i, SAGA_SR_ID), PQgetvalue(r, i, SAGA_SR_NAME),
                         w->problems[i]);
        saga__engine_produce(e, &sent);
    }
out:
    if (rc != SAGA_OK)
        saga__engine_rollback(e);
    for (int k = 0; k < nstates; k++) {
        saga_state_free(w->states[k]);
        saga_actions_clear(&w->acts_of[k]);
    }
    PQclear(r);
    saga_outbox_clear(&sent);
    return rc;
}

/* Turn pending start requests (libsaga's client, sagactl) into sagas in
 * one transaction; when that fails because of a request in it, each is
 * tried alone, and one that fails alone ISOLATE_TRIES times is set aside
 * (set_request_aside). Returns how many requests were read. */
int saga__engine_process_start_requests(saga_engine *e)
{
    start_work *w = calloc(1, sizeof *w);
    saga_error err = {0};
    int n = 0, rc;

    if (w == NULL || saga__engine_ensure_db(e) != 0) {
        free(w);
        return 0;
    }
    rc = start_tx(e, w, NULL, &n, &err);
    if (rc != SAGA_OK && (n == 0 || !saga_pgerr_blames_data(e->db, rc))) {
        saga__engine_warn_limited(&e->rolled_starts, "start requests rolled back: %s",
                                  err.message);
        n = 0;
    } else if (rc != SAGA_OK) {
        char(*taken)[SAGA_ID_LEN + 1] = malloc(sizeof *taken * (size_t)n);
        int total = n;
        saga_log(
            SAGA_LOG_WARN,
            "start requests: a batch of %d rolled back (%s); starting them one by one", n,
            err.message);
        if (taken == NULL) {
            free(w);
            return 0;
        }
        memcpy(taken, w->taken, sizeof *taken * (size_t)n);
        for (int k = 0; k < total; k++) {
            int one = 0, tries = 0;
            do {
                memset(&err, 0, sizeof err);
                memset(w, 0, sizeof *w);
                rc = start_tx(e, w, taken[k], &one, &err);
                if (rc != SAGA_OK && !saga_pgerr_blames_data(e->db, rc)) {
                    saga__engine_warn_limited(
                        &e->rolled_starts, "start requests rolled back: %s", err.message);
                    free(taken);
                    free(w);
                    return 0;
                }
            } while (rc != SAGA_OK && ++tries < ISOLATE_TRIES);
            if (rc != SAGA_OK)
                set_request_aside(e, taken[k], tries, err.message);
        }
        free(taken);
    }
    free(w);
    return n;
}
