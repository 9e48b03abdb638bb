/* saga_engine_send.c - where commands are sent: outbox rows committed by a
 * batch (or found by the periodic scan) are produced to Kafka, and the
 * delivery reports delete the confirmed rows; a command the broker refuses
 * as too large is noted for saga_engine_refused.c instead of being resent
 * for ever. */
#include "saga_engine_state.h"
#include "saga_shared.h"

static int too_large(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
           err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE ||
           err == RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE;
}

/* The broker (or librdkafka, against message.max.bytes) refused outbox
 * row id as too large: resending cannot help. The row stays in the
 * in-flight set (no scan sends it again) until fail_refused() has failed
 * its step and deleted it. Returns 0, or -1 when it could not be noted
 * (then the row is resent, and refused again). */
int saga__engine_note_refused(saga_engine *e, int64_t id, const char *topic,
                              const void *payload, size_t len, rd_kafka_resp_err_t why)
{
    json_t *cmd = json_loadb(payload, len, 0, NULL);
    const char *sid = json_string_value(json_object_get(cmd, "saga_id"));
    const char *phase = json_string_value(json_object_get(cmd, "phase"));
    refused_cmd *r;
    if (sid == NULL || phase == NULL || strlen(sid) != SAGA_ID_LEN) {
        json_decref(cmd);
        return -1;
    }
    if (saga__grow(&e->refused, &e->caprefused, e->nrefused + 1, sizeof *e->refused,
                   16) != SAGA_OK) {
        json_decref(cmd);
        return -1;
    }
    r = &e->refused[e->nrefused++];
    memset(r, 0, sizeof *r);
    r->outbox_id = id;
    memcpy(r->saga_id, sid, SAGA_ID_LEN + 1);
    r->step = (int)json_integer_value(json_object_get(cmd, "step"));
    r->attempt = (int)json_integer_value(json_object_get(cmd, "attempt"));
    /* A fan-out element's command (version 2) names its element. */
    r->element =
        json_integer_value(json_object_get(cmd, "v")) == SAGA_PROTOCOL_VERSION_ELEMENTS
            ? (int)json_integer_value(json_object_get(cmd, "element"))
            : -1;
    r->phase =
        strcmp(phase, "compensate") == 0 ? SAGA_PHASE_COMPENSATE : SAGA_PHASE_INVOKE;
    r->bytes = len;
    snprintf(r->topic, sizeof r->topic, "%s", topic);
    snprintf(r->why, sizeof r->why, "%s", rd_kafka_err2str(why));
    json_decref(cmd);
    return 0;
}

void saga__engine_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    saga_engine *e = opaque;
    int64_t id = (int64_t)(intptr_t)m->_private;
    (void)rk;
    if (too_large(m->err) && saga__engine_note_refused(e, id, rd_kafka_topic_name(m->rkt),
                                                       m->payload, m->len, m->err) == 0)
        return;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* Left in the outbox: the next scan sends it again. */
        e->stats.send_failures++;
        saga_metric_add(e->m.produce_errors, NULL, 1);
        saga__idset_del(&e->inflight, id);
        saga_log(SAGA_LOG_WARN,
                 "command (outbox %lld) to %s not delivered: %s; will resend",
                 (long long)id, rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
        return;
    }
    e->stats.commands_sent++;
    {
        const char *t = rd_kafka_topic_name(m->rkt), *s = saga__engine_cmd_service(e, t);
        const char *svc[1] = {s != NULL ? s : t};
        saga_metric_add(e->m.commands_sent, svc, 1);
    }
    if (saga__grow(&e->delivered, &e->capdelivered, e->ndelivered + 1,
                   sizeof *e->delivered, 1024) != SAGA_OK)
        return; /* the row stays; resent later, absorbed as a duplicate */
    e->delivered[e->ndelivered++] = id;
}

/* Hand outbox messages to the producer (not those already in flight). */
void saga__engine_produce(saga_engine *e, saga_outbox *o)
{
    for (int i = 0; i < o->n; i++) {
        saga_outbox_msg *m = &o->items[i];
        rd_kafka_resp_err_t err;
        char sig[SAGA_SIGNATURE_SIZE];
        const char *service;
        int signed_;
        if (saga__idset_has(&e->inflight, m->id))
            continue;
        service = saga__engine_cmd_service(e, m->topic);
        saga__engine_meet_service(e, service);
        signed_ = saga__engine_sign(e, service, m->topic, m->key, m->payload, sig);
        if (strncmp(m->topic, e->prefix, strlen(e->prefix)) != 0)
            saga_log(SAGA_LOG_WARN,
                     "outbox %lld goes to %s, outside this sagad's prefix %s: does the "
                     "program that started saga %s use another SAGA_TOPIC_PREFIX?",
                     (long long)m->id, m->topic, e->prefix, m->key);
        if (m->traceparent[0] != '\0' || signed_) {
            /* The attempt's span in the saga's trace (saga_tracing.h), and
             * the signature when the service has keys. */
            rd_kafka_headers_t *h = rd_kafka_headers_new(2);
            if (m->traceparent[0] != '\0')
                rd_kafka_header_add(h, "traceparent", -1, m->traceparent, -1);
            if (signed_)
                rd_kafka_header_add(h, SAGA_SIGNATURE_HEADER, -1, sig, -1);
            err = rd_kafka_producev(
                e->producer, RD_KAFKA_V_TOPIC(m->topic),
                RD_KAFKA_V_KEY(m->key, strlen(m->key)),
                RD_KAFKA_V_VALUE(m->payload, strlen(m->payload)),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                RD_KAFKA_V_OPAQUE((void *)(intptr_t)m->id), RD_KAFKA_V_END);
            /* Taken over by a produce that succeeded, else ours. */
            if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
                rd_kafka_headers_destroy(h);
        } else {
            err = rd_kafka_producev(e->producer, RD_KAFKA_V_TOPIC(m->topic),
                                    RD_KAFKA_V_KEY(m->key, strlen(m->key)),
                                    RD_KAFKA_V_VALUE(m->payload, strlen(m->payload)),
                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                    RD_KAFKA_V_OPAQUE((void *)(intptr_t)m->id),
                                    RD_KAFKA_V_END);
        }
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(e->producer, 100);
            i--;
            continue;
        }
        if (too_large(err) && saga__engine_note_refused(e, m->id, m->topic, m->payload,
                                                        strlen(m->payload), err) == 0) {
            saga__idset_add(&e->inflight, m->id);
            continue;
        }
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            e->stats.send_failures++;
            saga_metric_add(e->m.produce_errors, NULL, 1);
            saga_log(SAGA_LOG_WARN, "producing to %s: %s; will resend", m->topic,
                     rd_kafka_err2str(err));
            continue;
        }
        saga__idset_add(&e->inflight, m->id);
    }
}

/* Delete the outbox rows whose delivery Kafka confirmed. */
void saga__engine_forget_delivered(saga_engine *e)
{
    saga_error err = {0};
    if (e->ndelivered == 0 || saga__engine_ensure_db(e) != 0)
        return;
    if (saga_store_outbox_delete(e->db, e->delivered, e->ndelivered, &err) != SAGA_OK) {
        saga_log(SAGA_LOG_WARN, "%s", err.message);
        return;
    }
    for (int i = 0; i < e->ndelivered; i++)
        saga__idset_del(&e->inflight, e->delivered[i]);
    e->ndelivered = 0;
}

/* Send what the outbox holds that nobody else is sending, page by page
 * (a cursor on the id, so rows still waiting for Kafka's confirmation are
 * not claimed again and again). */
void saga__engine_scan_outbox(saga_engine *e)
{
    int64_t after = 0;
    int total = 0;
    if (saga__engine_ensure_db(e) != 0)
        return;
    while (!e->stop) {
        saga_outbox o = {0};
        saga_error err = {0};
        int n;
        if (saga_store_outbox_claim(e->db, e->owner, e->cfg.outbox_lease_s, !e->reclaimed,
                                    after, OUTBOX_SCAN_LIMIT, &o, &err) != SAGA_OK) {
            saga_log(SAGA_LOG_WARN, "%s", err.message);
            saga_outbox_clear(&o);
            return;
        }
        saga__engine_produce(e, &o);
        n = o.n;
        for (int i = 0; i < o.n; i++)
            if (o.items[i].id > after)
                after = o.items[i].id;
        saga_outbox_clear(&o);
        total += n;
        rd_kafka_poll(e->producer, 0);
        if (n < OUTBOX_SCAN_LIMIT)
            break;
    }
    if (!e->reclaimed && total > 0)
        saga_log(SAGA_LOG_INFO, "%d command(s) committed but not confirmed sent: sent",
                 total);
    e->reclaimed = 1;
}
