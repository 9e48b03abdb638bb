/* saga_engine_replies.c - where a reply is applied: a batch of consumed
 * replies is decoded, its sagas loaded and locked in one statement, each
 * reply applied by the machine (saga_engine_apply.c) and the batch
 * committed (saga_engine_commit.c) before the offsets are stored. A batch
 * that fails for the data's sake is applied again one reply at a time, and
 * a reply that fails alone ISOLATE_TRIES times, or is not a reply at all,
 * goes to saga.dead_letter. */
#include "saga_engine_state.h"
#include "saga_shared.h"

/* The replies of a rolled-back batch are consumed again. */
static void rewind_consumer(saga_engine *e)
{
    saga__kafka_rewind(e->consumer);
}

/* One transaction for a batch of replies: load every saga they touch with
 * two statements, apply the replies in the order they came, write it all
 * with one pipeline that ends in COMMIT. */
/* After the commit that set them aside (see saga_batch_load): one line. */
void saga__engine_log_set_aside(char (*ids)[SAGA_ID_LEN + 1], const unsigned char *aside,
                                int n, const char *what)
{
    int count = 0, first = -1;
    for (int i = 0; i < n; i++)
        if (aside[i] && count++ == 0)
            first = i;
    if (count > 0)
        saga_log(SAGA_LOG_ERROR,
                 "%d saga(s) set aside, %s: definition unavailable (saga %s%s; see "
                 "their history)",
                 count, what, ids[first], count > 1 ? " and others" : "");
}

/* Set the reply msg aside: it is written to saga.dead_letter with the
 * next transaction that commits (add_dead_replies), and logged then. */
static void queue_dead(saga_engine *e, const rd_kafka_message_t *m, int malformed,
                       int attempts, const char *ref, const char *reason)
{
    dead_reply *d;
    if (saga__grow(&e->dead, &e->capdead, e->ndead + 1, sizeof *e->dead, 16) != SAGA_OK) {
        /* Skipped without a row; still counted and logged. */
        saga_log(SAGA_LOG_ERROR,
                 "reply at %s[%d]@%lld skipped (out of memory for its dead letter): "
                 "%s",
                 rd_kafka_topic_name(m->rkt), (int)m->partition, (long long)m->offset,
                 reason);
        return;
    }
    d = &e->dead[e->ndead++];
    d->m = m;
    d->malformed = malformed;
    d->attempts = attempts;
    snprintf(d->ref, sizeof d->ref, "%s", ref ? ref : "");
    snprintf(d->reason, sizeof d->reason, "%s", reason);
}

/* Record the replies set aside (dead[from..to)) in the open transaction,
 * with their counts. */
static int add_dead_replies(saga_engine *e, int from, int to, saga_error *err)
{
    for (int i = from; i < to; i++) {
        const dead_reply *d = &e->dead[i];
        saga_dead_letter dl = {
            .source = "reply",
            .topic = rd_kafka_topic_name(d->m->rkt),
            .partition = (int)d->m->partition,
            .offset = d->m->offset,
            .key = d->m->key,
            .key_len = d->m->key_len,
            .ref = d->ref[0] ? d->ref : NULL,
            .payload = d->m->payload,
            .payload_len = d->m->len,
            .reason = d->reason,
            .attempts = d->attempts,
        };
        int rc = saga_batch_add_dead_letter(e->batch, &dl, err);
        if (rc != SAGA_OK)
            return rc;
        if (d->malformed)
            e->pend.malformed++;
        else
            e->pend.replies_rejected++;
        e->pend.dead_letters++;
        saga_tally_note(&e->tally, e->m.replies_dropped, 0, 1,
                        d->malformed ? "malformed" : "set_aside", NULL, NULL);
        saga_tally_note(&e->tally, e->m.dead_letters, 0, 1, "reply", NULL, NULL);
    }
    return SAGA_OK;
}

/* After the commit that wrote them: one line per reply set aside (a burst
 * of malformed ones: one line per 10 s, with how many more). */
static void log_dead_replies(saga_engine *e, int from, int to)
{
    for (int i = from; i < to; i++) {
        const dead_reply *d = &e->dead[i];
        const char *topic = rd_kafka_topic_name(d->m->rkt);
        if (d->malformed)
            saga__engine_warn_limited(
                &e->malformed,
                "malformed reply at %s[%d]@%lld set aside (sagactl dead list): "
                "%s",
                topic, (int)d->m->partition, (long long)d->m->offset, d->reason);
        else /* rare: a line each, always */
            saga_log(SAGA_LOG_WARN,
                     "reply at %s[%d]@%lld for saga %s set aside after %d failed "
                     "transactions (sagactl dead list): %s",
                     topic, (int)d->m->partition, (long long)d->m->offset,
                     d->ref[0] ? d->ref : "?", d->attempts, d->reason);
    }
}

/* One transaction: load the sagas of replies[idx[0..n)], apply the
 * replies in order, write it all (with the dead letters dead[from..to))
 * and COMMIT, then send the commands. On failure it is rolled back and
 * err says why. */
/* Reply r (message m) may not answer for its step: set aside in the open
 * transaction (so a rollback takes it back with the rest), counted and
 * logged. */
static int reject_distrusted(saga_engine *e, const rd_kafka_message_t *m,
                             const saga_reply *r, const char *label, const char *why,
                             saga_error *err)
{
    saga_dead_letter dl = {
        .source = "reply",
        .topic = rd_kafka_topic_name(m->rkt),
        .partition = (int)m->partition,
        .offset = m->offset,
        .key = m->key,
        .key_len = m->key_len,
        .ref = r->saga_id,
        .payload = m->payload,
        .payload_len = m->len,
        .reason = why,
        .attempts = 1,
    };
    int rc = saga_batch_add_dead_letter(e->batch, &dl, err);
    if (rc != SAGA_OK)
        return rc;
    e->pend.replies_rejected++;
    e->pend.dead_letters++;
    saga_tally_note(&e->tally, e->m.replies_dropped, 0, 1, label, NULL, NULL);
    saga_tally_note(&e->tally, e->m.dead_letters, 0, 1, "reply", NULL, NULL);
    saga__engine_warn_limited(
        &e->distrusted,
        "reply at %s[%d]@%lld rejected (%s), set aside (sagactl dead "
        "list): %s",
        dl.topic, dl.partition, (long long)dl.offset, label, why);
    return SAGA_OK;
}

static int apply_replies(saga_engine *e, rd_kafka_message_t **msgs, saga_reply *replies,
                         const int *idx, int n, int dead_from, int dead_to,
                         saga_error *err)
{
    char(*ids)[SAGA_ID_LEN + 1] = malloc(sizeof *ids * (size_t)(n > 0 ? n : 1));
    saga_state **states = calloc((size_t)(n > 0 ? n : 1), sizeof *states);
    unsigned char *aside = calloc((size_t)(n > 0 ? n : 1), 1);
    saga_outbox sent = {0};
    int nids = 0, rc = SAGA_OK;

    if (ids == NULL || states == NULL || aside == NULL) {
        rc = saga__error_set(err, SAGA_ENOMEM, "out of memory");
        goto out;
    }
    for (int k = 0; k < n; k++)
        memcpy(ids[nids++], replies[idx[k]].saga_id, SAGA_ID_LEN + 1);
    nids = n > 0 ? saga__engine_sort_unique(ids, nids) : 0;
    saga_pgerr_clear();
    if (nids > 0)
        rc = saga_batch_load(e->db, e->defs, ids, nids, 1, states, aside, err);
    else
        rc = saga_store_exec(e->db, "BEGIN", err);
    for (int k = 0; k < n && rc == SAGA_OK; k++) {
        saga_reply *r = &replies[idx[k]];
        saga_event ev = {.kind = SAGA_EV_REPLY,
                         .now = saga_now_ms(),
                         .random = next_random(e),
                         .reply = r};
        int j = saga__engine_find_id(ids, nids, r->saga_id);
        if (j >= 0 && aside[j]) {
            /* Its definition cannot be loaded: counted, not applied; a
             * retry once it is repaired re-sends the command. */
            e->pend.replies_rejected++;
            saga_tally_note(&e->tally, e->m.replies_dropped, 0, 1,
                            "definition_unavailable", NULL, NULL);
            continue;
        }
        if (j < 0 || states[j] == NULL) {
            e->pend.replies_rejected++;
            saga_tally_note(&e->tally, e->m.replies_dropped, 0, 1, "unknown_saga", NULL,
                            NULL);
            saga__engine_warn_limited(&e->unknown_saga,
                                      "reply for unknown saga %s rejected", r->saga_id);
            continue;
        }
        {
            char why[600];
            const char *label =
                saga__engine_distrust(e, states[j], r, msgs[idx[k]], why, sizeof why);
            if (label != NULL) {
                rc = reject_distrusted(e, msgs[idx[k]], r, label, why, err);
                continue;
            }
        }
        rc = saga__engine_apply_one(e, states[j], &ev, err);
    }
    if (rc == SAGA_OK)
        rc = add_dead_replies(e, dead_from, dead_to, err);
    if (rc == SAGA_OK)
        rc = saga__engine_commit_batch(e, &sent, err);
    if (rc != SAGA_OK) {
        saga__engine_rollback(e);
        goto out;
    }
    saga__engine_log_set_aside(ids, aside, nids, "their replies not applied");
    log_dead_replies(e, dead_from, dead_to);
    saga__engine_produce(e, &sent);
out:
    for (int i = 0; i < nids; i++)
        saga_state_free(states[i]);
    free(ids);
    free(states);
    free(aside);
    saga_outbox_clear(&sent);
    return rc;
}

/* The dead letters dead[0..ndead) alone, when the transaction that was to
 * carry them failed: together, else one by one, and one that cannot be
 * written even alone is logged and dropped (bounded: never a loop).
 * Returns SAGA_OK, or an error that is not theirs (the database is gone:
 * the caller consumes the batch again). */
static int write_dead_alone(saga_engine *e, saga_error *err)
{
    int rc = apply_replies(e, NULL, NULL, NULL, 0, 0, e->ndead, err);
    if (rc == SAGA_OK || !saga_pgerr_blames_data(e->db, rc))
        return rc;
    for (int i = 0; i < e->ndead; i++) {
        const dead_reply *d = &e->dead[i];
        if ((rc = apply_replies(e, NULL, NULL, NULL, 0, i, i + 1, err)) == SAGA_OK)
            continue;
        if (!saga_pgerr_blames_data(e->db, rc))
            return rc;
        saga_log(SAGA_LOG_ERROR,
                 "reply at %s[%d]@%lld skipped: %s; its dead letter could not be written "
                 "either: %s",
                 rd_kafka_topic_name(d->m->rkt), (int)d->m->partition,
                 (long long)d->m->offset, d->reason, err->message);
        memset(err, 0, sizeof *err);
    }
    return SAGA_OK;
}

/* One batch of replies. Malformed ones and ones whose output is over the
 * limit are set aside at once. The rest is applied in one transaction;
 * when that fails because of what it holds (saga_pgerr_blames_data), each
 * reply is applied alone, and one that fails alone ISOLATE_TRIES times is
 * set aside with the database's reason: the others are applied, the batch
 * is never rolled back and consumed again in a loop. When the database is
 * not there (or the failure is the server's), the batch is consumed again
 * later and nobody is blamed. */
int saga__engine_process_replies(saga_engine *e, rd_kafka_message_t **msgs, int n)
{
    saga_reply *replies = calloc((size_t)n, sizeof *replies);
    int *idx = malloc(sizeof *idx * (size_t)n);
    saga_error err = {0};
    int nvalid = 0, rc = SAGA_OK;

    e->ndead = 0;
    if (replies == NULL || idx == NULL) {
        free(replies);
        free(idx);
        return SAGA_ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        saga_error derr = {0};
        saga_reply *r = &replies[i];
        if (saga_reply_decode(msgs[i]->payload, msgs[i]->len, r, &derr) != SAGA_OK) {
            queue_dead(e, msgs[i], 1, 1, NULL, derr.message);
            continue;
        }
        /* PostgreSQL prints UUIDs in lower case; match them that way. */
        for (char *c = r->saga_id; *c; c++)
            if (*c >= 'A' && *c <= 'F')
                *c = (char)(*c - 'A' + 'a');
        /* The output is part of the message: only a message longer than
         * the limit can hold an output over it (no dump per reply). It is
         * measured as PostgreSQL prints it, as every door measures. A
         * larger one is the participant's definite answer that it cannot
         * be stored: the step fails with message_too_large. */
        if (r->status == SAGA_REPLY_OK && r->output != NULL && e->max_output_bytes > 0 &&
            (int64_t)msgs[i]->len > e->max_output_bytes) {
            size_t bytes = json_dumpb(r->output, NULL, 0, 0);
            if ((int64_t)bytes > e->max_output_bytes) {
                char why[200];
                snprintf(why, sizeof why,
                         "the step's output of %zu bytes is over the limit of %lld bytes "
                         "(saga.limits max_output_bytes)",
                         bytes, (long long)e->max_output_bytes);
                saga__engine_warn_limited(
                    &e->big_outputs,
                    "reply at %s[%d]@%lld for saga %s step %d: %s; the step "
                    "fails with message_too_large",
                    rd_kafka_topic_name(msgs[i]->rkt), (int)msgs[i]->partition,
                    (long long)msgs[i]->offset, r->saga_id, r->step, why);
                json_decref(r->output);
                r->output = NULL;
                free(r->error_code);
                free(r->error_message);
                r->status = SAGA_REPLY_FAILED;
                r->error_code = strdup("message_too_large");
                r->error_message = strdup(why);
                if (r->error_code == NULL || r->error_message == NULL) {
                    queue_dead(e, msgs[i], 0, 1, r->saga_id, why);
                    continue;
                }
            }
        }
        idx[nvalid++] = i;
    }
    if (nvalid == 0 && e->ndead == 0)
        goto offsets;
    if (saga__engine_ensure_db(e) != 0) {
        rc = SAGA_EDB;
        goto again;
    }
    rc = apply_replies(e, msgs, replies, idx, nvalid, 0, e->ndead, &err);
    if (rc == SAGA_OK)
        goto offsets;
    if (!saga_pgerr_blames_data(e->db, rc)) {
        saga__engine_warn_limited(&e->rolled_replies,
                                  "reply batch rolled back, will be consumed again: %s",
                                  err.message);
        goto again;
    }
    /* Something in the batch makes the transaction fail: find it. */
    saga_log(SAGA_LOG_WARN,
             "reply batch of %d rolled back (%s); applying its replies one by one",
             nvalid, err.message);
    for (int k = 0; k < nvalid; k++) {
        int tries = 0;
        do {
            memset(&err, 0, sizeof err);
            rc = apply_replies(e, msgs, replies, &idx[k], 1, 0, 0, &err);
            if (rc != SAGA_OK && !saga_pgerr_blames_data(e->db, rc)) {
                saga__engine_warn_limited(
                    &e->rolled_replies,
                    "reply batch rolled back, will be consumed again: %s", err.message);
                goto again;
            }
        } while (rc != SAGA_OK && ++tries < ISOLATE_TRIES);
        if (rc != SAGA_OK)
            queue_dead(e, msgs[idx[k]], 0, tries, replies[idx[k]].saga_id, err.message);
    }
    if (e->ndead > 0 && (rc = write_dead_alone(e, &err)) != SAGA_OK) {
        saga__engine_warn_limited(&e->rolled_replies,
                                  "reply batch rolled back, will be consumed again: %s",
                                  err.message);
        goto again;
    }
offsets : {
    rd_kafka_topic_partition_list_t *done = NULL;
    rd_kafka_resp_err_t ke;
    if (e->feeding) {
        rc = SAGA_OK;
        goto out;
    }
    for (int i = 0; i < n; i++)
        saga__kafka_track(&done, msgs[i]);
    ke = saga__kafka_store_tracked(e->consumer, &done);
    if (ke != RD_KAFKA_RESP_ERR_NO_ERROR)
        saga_log(SAGA_LOG_WARN, "storing reply offsets: %s", rd_kafka_err2str(ke));
    rc = SAGA_OK;
    goto out;
}
again:
    /* Consumed again once the database answers (not before half a second:
     * a full disk or a server shutting down is not retried in a tight
     * loop): what was applied is then a duplicate, what was set aside is
     * not set aside twice. */
    if (!e->feeding) {
        rewind_consumer(e);
        e->replies_after_ms = saga__mono_ms() + 500;
    }
out:
    for (int i = 0; i < n; i++)
        saga_reply_clear(&replies[i]);
    e->ndead = 0;
    free(replies);
    free(idx);
    return rc;
}
