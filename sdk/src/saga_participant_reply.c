/* saga_participant_reply.c - replies and dead letters: built, signed,
 * handed to the producer now or after the group's COMMIT, and their
 * delivery reports; a command whose reply cannot be delivered is
 * dead-lettered after max_redeliveries. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga_participant_private.h"

/* Errors that sending the same message again cannot cure: the message or
 * its topic is wrong. Anything else (no broker, a timeout) heals. */
static int cannot_heal(rd_kafka_resp_err_t e)
{
    switch (e) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return 1;
    default:
        return 0;
    }
}

static failed_offset *find_failed(saga_participant *p, int32_t partition, int64_t offset)
{
    for (int i = 0; i < p->nfailed; i++)
        if (p->failed[i].partition == partition && p->failed[i].offset == offset)
            return &p->failed[i];
    return NULL;
}

/* Note a failure that cannot heal for the command at partition/offset;
 * counted only when its reply was alone in its request (alone): the
 * broker refuses a whole batch for one message too large in it, so a
 * failure in company only marks the command to be answered alone next
 * time. Returns the count. */
static int note_failed(saga_participant *p, int32_t partition, int64_t offset,
                       const char *why, int alone)
{
    failed_offset *f = find_failed(p, partition, offset);
    if (f == NULL) {
        if (p->nfailed == FAILED_MAX) { /* forget the oldest */
            memmove(p->failed, p->failed + 1, sizeof *f * (FAILED_MAX - 1));
            p->nfailed--;
        }
        f = &p->failed[p->nfailed++];
        f->partition = partition;
        f->offset = offset;
        f->count = 0;
    }
    f->count += alone;
    snprintf(f->why, sizeof f->why, "%s", why);
    return f->count;
}

void saga__participant_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg,
                                   void *opaque)
{
    saga_participant *p = opaque;
    delivery_tag *t = msg->_private;
    (void)rk;
    if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *topic = rd_kafka_topic_name(msg->rkt);
        int heals = !cannot_heal(msg->err);
        if (t != NULL && t->dead) {
            /* Nowhere left to put it: said loudly; a failure that heals has
             * the command consumed again. */
            if (heals)
                p->delivery_failures++;
            saga__participant_fail(
                p, "the command at %s[%d]@%lld could not be dead-lettered to %s: %s%s",
                p->cmd_topic, (int)t->partition, (long long)t->offset, topic,
                rd_kafka_err2str(msg->err),
                heals ? "; it will be consumed again" : "; it is skipped");
        } else if (t != NULL) {
            char why[200];
            STAT_ADD(p, undeliverable, 1);
            p->delivery_failures++;
            snprintf(why, sizeof why, "its reply to %.100s was refused: %s", topic,
                     rd_kafka_err2str(msg->err));
            if (heals)
                saga__participant_warn(
                    p,
                    "reply to %s for the command at %s[%d]@%lld not delivered: %s; it "
                    "will be consumed again",
                    topic, p->cmd_topic, (int)t->partition, (long long)t->offset,
                    rd_kafka_err2str(msg->err));
            else if (!t->alone) {
                note_failed(p, t->partition, t->offset, why, 0);
                saga__participant_warn(
                    p,
                    "reply to %s for the command at %s[%d]@%lld not delivered: %s; it "
                    "will be consumed again and answered alone",
                    topic, p->cmd_topic, (int)t->partition, (long long)t->offset,
                    rd_kafka_err2str(msg->err));
            } else
                saga__participant_warn(
                    p,
                    "reply to %s for the command at %s[%d]@%lld not delivered: %s "
                    "(%d of %d; then it is dead-lettered)",
                    topic, p->cmd_topic, (int)t->partition, (long long)t->offset,
                    rd_kafka_err2str(msg->err),
                    note_failed(p, t->partition, t->offset, why, 1),
                    p->max_redeliveries + 1);
        } else {
            STAT_ADD(p, undeliverable, 1);
            saga__participant_warn(
                p,
                "deferred reply to %s not delivered: %s; sagad sends the command again "
                "after the step's timeout",
                topic, rd_kafka_err2str(msg->err));
        }
    }
    free(t);
}

static int is_element(const saga_command *cmd)
{
    return cmd->v == SAGA_PROTOCOL_VERSION_ELEMENTS;
}

/* The reply as a JSON object (for the barrier cache), the fields in
 * saga_reply_encode's order: a reply to an element's command is version 2
 * and carries its element, after "status". */
json_t *saga__participant_reply_object(const saga_command *cmd, const saga_result *r)
{
    json_t *o = json_pack(
        "{s:i, s:s, s:i, s:s, s:s, s:i, s:s}", "v",
        is_element(cmd) ? SAGA_PROTOCOL_VERSION_ELEMENTS : SAGA_PROTOCOL_VERSION,
        "saga_id", cmd->saga_id, "step", cmd->step, "phase", saga_phase_name(cmd->phase),
        "command_id", cmd->command_id, "attempt", cmd->attempt, "status",
        saga_reply_status_name(r->status));
    if (o == NULL)
        return NULL;
    if (is_element(cmd))
        json_object_set_new(o, "element", json_integer(cmd->element));
    if (r->status == SAGA_REPLY_OK)
        json_object_set(o, "output", r->output ? r->output : json_object());
    else
        json_object_set_new(
            o, "error", json_pack("{s:s, s:s}", "code", r->code, "message", r->message));
    if (r->status == SAGA_REPLY_RETRY && r->retry_after > 0)
        json_object_set_new(o, "retry_after", json_integer(r->retry_after));
    return o;
}

/* The answer to an action that came after its compensation. */
void saga__participant_refuse_hanging(saga_result *res, const saga_command *cmd)
{
    if (is_element(cmd))
        saga_result_fail(res, "hanging_action",
                         "step %d element %d of saga %s was already compensated; action "
                         "refused",
                         cmd->step, cmd->element, cmd->saga_id);
    else
        saga_result_fail(res, "hanging_action",
                         "step %d of saga %s was already compensated; action refused",
                         cmd->step, cmd->saga_id);
}

/* Hand a reply (text is taken) to the producer. partition and offset are
 * the command's (-1: a deferred reply), for the delivery report. */
static void produce_reply(saga_participant *p, const char *topic, const char *key,
                          char *text, const char *tp, size_t tplen, int32_t partition,
                          int64_t offset)
{
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_resp_err_t e;
    delivery_tag *tag = NULL;
    if (partition >= 0) {
        tag = malloc(sizeof *tag);
        if (tag == NULL) {
            free(text);
            p->delivery_failures++;
            saga__participant_warn(p, "out of memory sending a reply to %s", topic);
            return;
        }
        tag->partition = partition;
        tag->offset = offset;
        tag->dead = 0;
        /* A command whose reply was refused in company is answered in a
         * request of its own, so that a refusal is its own fault. */
        tag->alone = find_failed(p, partition, offset) != NULL;
        if (tag->alone)
            rd_kafka_flush(p->producer, FLUSH_TIMEOUT_MS);
    }
    if (tp != NULL || p->keys != NULL)
        hdrs = rd_kafka_headers_new(2);
    if (tp != NULL)
        rd_kafka_header_add(hdrs, "traceparent", -1, tp, (ssize_t)tplen);
    if (p->keys != NULL) {
        char sig[SAGA_SIGNATURE_SIZE];
        if (saga_sign(p->keys, topic, key, strlen(key), text, strlen(text), sig) ==
            SAGA_OK)
            rd_kafka_header_add(hdrs, SAGA_SIGNATURE_HEADER, -1, sig, -1);
    }
    /* Two calls: RD_KAFKA_V_HEADERS() is two arguments (a type tag and the
     * list), which cannot be chosen between with ?: in one call. */
    if (hdrs != NULL)
        e = rd_kafka_producev(
            p->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE(text, strlen(text)),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE), RD_KAFKA_V_OPAQUE(tag),
            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
    else
        e = rd_kafka_producev(p->producer, RD_KAFKA_V_TOPIC(topic),
                              RD_KAFKA_V_KEY(key, strlen(key)),
                              RD_KAFKA_V_VALUE(text, strlen(text)),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
                              RD_KAFKA_V_OPAQUE(tag), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        size_t len = strlen(text);
        free(text);
        free(tag);
        if (hdrs)
            rd_kafka_headers_destroy(hdrs);
        STAT_ADD(p, undeliverable, 1);
        if (partition < 0) {
            saga__participant_warn(
                p,
                "deferred reply to %s not sent: %s; sagad sends the command again "
                "after the step's timeout",
                topic, rd_kafka_err2str(e));
            return;
        }
        p->delivery_failures++;
        if (cannot_heal(e)) {
            char why[200];
            snprintf(why, sizeof why, "its reply of %zu bytes to %.100s was refused: %s",
                     len, topic, rd_kafka_err2str(e));
            saga__participant_warn(
                p,
                "reply of %zu bytes to %s for the command at %s[%d]@%lld not sent: %s "
                "(%d of %d; then it is dead-lettered)",
                len, topic, p->cmd_topic, (int)partition, (long long)offset,
                rd_kafka_err2str(e), note_failed(p, partition, offset, why, 1),
                p->max_redeliveries + 1);
        } else {
            saga__participant_warn(
                p,
                "reply to %s for the command at %s[%d]@%lld not sent: %s; it will be "
                "consumed again",
                topic, p->cmd_topic, (int)partition, (long long)offset,
                rd_kafka_err2str(e));
        }
        return;
    }
    if (tag != NULL && tag->alone)
        rd_kafka_flush(p->producer, FLUSH_TIMEOUT_MS);
}

/* Count a reply handed to Kafka by its status; cached replies carry the
 * status they were recorded with. */
static void count_reply(saga_participant *p, const json_t *reply)
{
    saga_reply_status st;
    if (saga_reply_status_parse(json_string_value(json_object_get(reply, "status")),
                                &st) != SAGA_OK)
        return;
    if (st == SAGA_REPLY_OK)
        STAT_ADD(p, replied_ok, 1);
    else if (st == SAGA_REPLY_FAILED)
        STAT_ADD(p, replied_failed, 1);
    else
        STAT_ADD(p, replied_retry, 1);
}

/* Send reply now, or after the open group's COMMIT. */
void saga__participant_send_reply(saga_participant *p, const saga_command *cmd,
                                  json_t *reply, const rd_kafka_message_t *in)
{
    char *text;
    rd_kafka_headers_t *inh = NULL;
    const void *tp = NULL;
    size_t tplen = 0;

    /* Replies carry the attempt they answer, even when cached; and the
     * command's version and element (the barrier keys on the element, so a
     * cached reply has them already, unless a row of version 1 was kept
     * for element 0). */
    json_object_set_new(reply, "attempt", json_integer(cmd->attempt));
    json_object_set_new(reply, "v",
                        json_integer(is_element(cmd) ? SAGA_PROTOCOL_VERSION_ELEMENTS
                                                     : SAGA_PROTOCOL_VERSION));
    if (is_element(cmd))
        json_object_set_new(reply, "element", json_integer(cmd->element));
    else
        json_object_del(reply, "element");
    text = json_dumps(reply, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (text == NULL) {
        p->delivery_failures++;
        return;
    }
    count_reply(p, reply);
    if (cmd->traceparent != NULL) {
        /* Kept with the command, so a deferred reply carries it too. */
        tp = cmd->traceparent;
        tplen = strlen(cmd->traceparent);
    } else if (in == NULL || p->feeding ||
               rd_kafka_message_headers(in, &inh) != RD_KAFKA_RESP_ERR_NO_ERROR ||
               rd_kafka_header_get_last(inh, "traceparent", &tp, &tplen) !=
                   RD_KAFKA_RESP_ERR_NO_ERROR) {
        tp = NULL;
    }
    if (p->group_open) {
        pending_reply *r;
        if (saga__grow(&p->pending, &p->cappending, p->npending + 1, sizeof *p->pending,
                       64) != SAGA_OK) {
            free(text);
            p->group_failed = 1; /* redelivered: the barrier answers */
            return;
        }
        r = &p->pending[p->npending];
        r->topic = strdup(cmd->reply_to);
        r->text = text;
        r->traceparent = tp ? strndup(tp, tplen) : NULL;
        snprintf(r->key, sizeof r->key, "%s", cmd->saga_id);
        r->partition = in != NULL ? in->partition : -1;
        r->offset = in != NULL ? in->offset : -1;
        if (r->topic == NULL || (tp != NULL && r->traceparent == NULL)) {
            free(r->topic);
            free(r->text);
            free(r->traceparent);
            p->group_failed = 1;
            return;
        }
        p->npending++;
        return;
    }
    produce_reply(p, cmd->reply_to, cmd->saga_id, text, tp, tplen,
                  in != NULL ? in->partition : -1, in != NULL ? in->offset : -1);
}

void saga__participant_drop_pending(saga_participant *p, int send)
{
    for (int i = 0; i < p->npending; i++) {
        pending_reply *r = &p->pending[i];
        if (send)
            produce_reply(p, r->topic, r->key, r->text, r->traceparent,
                          r->traceparent ? strlen(r->traceparent) : 0, r->partition,
                          r->offset);
        else
            free(r->text);
        free(r->topic);
        free(r->traceparent);
    }
    p->npending = 0;
}

/* Set the command m aside: to the dead-letter topic with why, or (none
 * configured) only logged. Either way it is not handled, and its offset
 * is committed with the batch's. */
void saga__participant_dead_letter(saga_participant *p, const rd_kafka_message_t *m,
                                   const char *why)
{
    rd_kafka_headers_t *h;
    rd_kafka_resp_err_t e;
    delivery_tag *tag;
    char part[16], off[24], bytes[24];
    size_t len = m->len, room;

    STAT_ADD(p, dead_lettered, 1);
    if (p->dead_topic[0] == '\0') {
        saga__participant_warn(
            p, "the command at %s[%d]@%lld was skipped (no dead-letter topic): %s",
            p->cmd_topic, (int)m->partition, (long long)m->offset, why);
        return;
    }
    /* Room for the key and the headers: a message as large as the broker
     * takes is kept in part rather than lost. */
    room = p->max_message_bytes > 32768 ? (size_t)p->max_message_bytes - 16384 : 16384;
    if (len > room)
        len = room;
    tag = malloc(sizeof *tag);
    h = rd_kafka_headers_new(6);
    if (tag == NULL || h == NULL) {
        free(tag);
        if (h != NULL)
            rd_kafka_headers_destroy(h);
        saga__participant_fail(
            p, "the command at %s[%d]@%lld was skipped (out of memory): %s", p->cmd_topic,
            (int)m->partition, (long long)m->offset, why);
        return;
    }
    tag->partition = m->partition;
    tag->offset = m->offset;
    tag->dead = 1;
    snprintf(part, sizeof part, "%d", (int)m->partition);
    snprintf(off, sizeof off, "%lld", (long long)m->offset);
    snprintf(bytes, sizeof bytes, "%zu", m->len);
    rd_kafka_header_add(h, "saga-dead-reason", -1, why, -1);
    rd_kafka_header_add(h, "saga-dead-topic", -1, p->cmd_topic, -1);
    rd_kafka_header_add(h, "saga-dead-partition", -1, part, -1);
    rd_kafka_header_add(h, "saga-dead-offset", -1, off, -1);
    rd_kafka_header_add(h, "saga-dead-service", -1, p->service, -1);
    if (len < m->len)
        rd_kafka_header_add(h, "saga-dead-bytes", -1, bytes, -1);
    e = rd_kafka_producev(
        p->producer, RD_KAFKA_V_TOPIC(p->dead_topic), RD_KAFKA_V_KEY(m->key, m->key_len),
        RD_KAFKA_V_VALUE(m->payload, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_OPAQUE(tag), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        free(tag);
        rd_kafka_headers_destroy(h);
        if (!cannot_heal(e))
            p->delivery_failures++;
        saga__participant_fail(
            p, "the command at %s[%d]@%lld could not be dead-lettered to %s: %s; %s: %s",
            p->cmd_topic, (int)m->partition, (long long)m->offset, p->dead_topic,
            rd_kafka_err2str(e),
            cannot_heal(e) ? "it is skipped" : "it will be consumed again", why);
        return;
    }
    saga__participant_warn(p, "the command at %s[%d]@%lld was dead-lettered to %s: %s",
                           p->cmd_topic, (int)m->partition, (long long)m->offset,
                           p->dead_topic, why);
}

/* The command at m's offset whose reply could not be delivered too many
 * times: dead-letter it instead of handling it again. */
int saga__participant_dead_after_failures(saga_participant *p,
                                          const rd_kafka_message_t *m)
{
    for (int i = 0; i < p->nfailed; i++) {
        failed_offset *f = &p->failed[i];
        if (f->partition == m->partition && f->offset == m->offset) {
            char why[300];
            if (f->count <= p->max_redeliveries)
                return 0;
            snprintf(why, sizeof why, "answered %d time(s) but %s", f->count, f->why);
            memmove(f, f + 1, sizeof *f * (size_t)(p->nfailed - i - 1));
            p->nfailed--;
            saga__participant_dead_letter(p, m, why);
            return 1;
        }
    }
    return 0;
}
