/* saga_engine_refused.c - commands the broker refused as too large: each
 * fails its step with message_too_large through the machine (settled
 * UNSENT with the gate, so the breaker does not count it) and its outbox
 * row is deleted in the same transaction. */
#include "saga_engine_state.h"

/* One refused command in one transaction: its step fails with
 * message_too_large (a definite failure: the participant never saw the
 * command, so nothing of it remains; the saga compensates the steps
 * before, or stops as failed when it was a compensation), and its outbox
 * row goes. The gate settles it as UNSENT: a service that never saw the
 * command is not judged by it. A saga that moved on meanwhile only loses
 * the row. */
static int fail_one_refused(saga_engine *e, const refused_cmd *c, saga_error *err)
{
    char ids[1][SAGA_ID_LEN + 1];
    saga_state *states[1] = {NULL};
    unsigned char aside[1] = {0};
    saga_outbox sent = {0};
    char cid[128], msg[700];
    saga_reply r;
    int rc;

    memcpy(ids[0], c->saga_id, SAGA_ID_LEN + 1);
    saga_command_id_format_element(cid, sizeof cid, c->saga_id, c->step, c->phase,
                                   c->element);
    snprintf(msg, sizeof msg,
             "the %s command of %zu bytes to %s was refused by Kafka (%s; sagad's "
             "message.max.bytes is %lld): the step's input is too large to send",
             saga_phase_name(c->phase), c->bytes, c->topic, c->why,
             (long long)e->max_message_bytes);
    memset(&r, 0, sizeof r);
    r.v = c->element >= 0 ? SAGA_PROTOCOL_VERSION_ELEMENTS : SAGA_PROTOCOL_VERSION;
    r.element = c->element >= 0 ? c->element : 0;
    memcpy(r.saga_id, c->saga_id, SAGA_ID_LEN + 1);
    r.step = c->step;
    r.phase = c->phase;
    r.command_id = cid;
    r.attempt = c->attempt;
    r.status = SAGA_REPLY_FAILED;
    r.error_code = (char *)"message_too_large";
    r.error_message = msg;
    saga_pgerr_clear();
    rc = saga_batch_load(e->db, e->defs, ids, 1, 1, states, aside, err);
    if (rc == SAGA_OK && states[0] != NULL) {
        saga_event ev = {.kind = SAGA_EV_REPLY,
                         .now = saga_now_ms(),
                         .random = next_random(e),
                         .reply = &r};
        if (c->step >= 0 && c->step < states[0]->nsteps)
            saga_tally_note(&e->tally, e->m.commands_refused, 0, 1,
                            states[0]->def->steps[c->step].service, NULL, NULL);
        e->unsent = 1;
        rc = saga__engine_apply_one(e, states[0], &ev, err);
        e->unsent = 0;
    }
    if (rc == SAGA_OK)
        rc = saga_store_outbox_delete(e->db, &c->outbox_id, 1, err);
    if (rc == SAGA_OK)
        rc = saga__engine_commit_batch(e, &sent, err);
    if (rc != SAGA_OK)
        saga__engine_rollback(e);
    else {
        saga_log(SAGA_LOG_WARN,
                 "saga %s step %d (%s): %s; the step failed with "
                 "message_too_large",
                 c->saga_id, c->step, saga_phase_name(c->phase), msg);
        saga__engine_produce(e, &sent);
    }
    saga_state_free(states[0]);
    saga_outbox_clear(&sent);
    return rc;
}

/* The commands the broker refused as too large (note_refused), oldest
 * first. One that cannot be failed without failing its transaction
 * (ISOLATE_TRIES times) has its outbox row deleted alone: its step then
 * times out and runs out of attempts like any command that gets no
 * answer — bounded, never resent for ever. */
void saga__engine_fail_refused(saga_engine *e)
{
    while (e->nrefused > 0 && !e->stop && saga__engine_ensure_db(e) == 0) {
        refused_cmd c = e->refused[0];
        saga_error err = {0};
        int rc, tries = 0;
        do {
            memset(&err, 0, sizeof err);
            rc = fail_one_refused(e, &c, &err);
        } while (rc != SAGA_OK && saga_pgerr_blames_data(e->db, rc) &&
                 ++tries < ISOLATE_TRIES);
        if (rc != SAGA_OK && !saga_pgerr_blames_data(e->db, rc))
            return; /* the database's trouble: again later */
        if (rc != SAGA_OK) {
            saga_error derr = {0};
            saga_log(SAGA_LOG_ERROR,
                     "saga %s step %d: the command of %zu bytes to %s is too large to "
                     "send and its step could not be failed (%s): the command is dropped",
                     c.saga_id, c.step, c.bytes, c.topic, err.message);
            if (saga_store_outbox_delete(e->db, &c.outbox_id, 1, &derr) != SAGA_OK &&
                !saga_pgerr_blames_data(e->db, SAGA_EDB))
                return;
        }
        saga__idset_del(&e->inflight, c.outbox_id);
        memmove(e->refused, e->refused + 1, sizeof *e->refused * (size_t)--e->nrefused);
    }
}
