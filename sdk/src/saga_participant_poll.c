/* saga_participant_poll.c - the poll loop: consume a batch of commands,
 * check each (signature, shape, reply topic), run its handler, and store
 * the consumed offsets only after every reply is acknowledged by Kafka;
 * otherwise rewind so that the batch is consumed again. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include "saga_participant_private.h"

static const handler *find_handler(const saga_participant *p, saga_phase phase,
                                   const char *name)
{
    for (int i = 0; i < p->nhandlers; i++)
        if (p->handlers[i].phase == phase && strcmp(p->handlers[i].name, name) == 0)
            return &p->handlers[i];
    return NULL;
}

/* A command's reply_to must be this deployment's reply topic: a command
 * sending replies anywhere else would have them refused, or read by
 * nobody, for ever. */
static int reply_to_ours(const saga_participant *p, const char *topic)
{
    return strcmp(topic, p->reply_topic) == 0 || strcmp(topic, p->own_reply_topic) == 0;
}

/* With key_file: the command must carry a signature made with one of the
 * service's keys over this topic, key and value; one that does not is
 * counted, dead-lettered (with why) and not handled. A forged command
 * would otherwise run its action: release credit, reserve stock. */
static int signed_by_sagad(saga_participant *p, const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *sig = NULL;
    size_t siglen = 0;
    saga_error e = {0};
    char why[600];
    /* A message made by saga__participant_feed has no headers. */
    if (!p->feeding && rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(hdrs, SAGA_SIGNATURE_HEADER, &sig, &siglen) !=
            RD_KAFKA_RESP_ERR_NO_ERROR)
        sig = NULL;
    if (saga_verify(p->keys, rd_kafka_topic_name(m->rkt), m->key, m->key_len, m->payload,
                    m->len, sig, siglen, &e) == SAGA_OK)
        return 1;
    STAT_ADD(p, unauthenticated, 1);
    snprintf(why, sizeof why, "unauthenticated: %s", e.message);
    saga__participant_dead_letter(p, m, why);
    return 0;
}

static void handle_message(saga_participant *p, const rd_kafka_message_t *m)
{
    saga_command cmd;
    saga_error e = {0};
    saga_result res = {0};
    json_t *reply = NULL, *cached = NULL;
    const handler *h;

    STAT_ADD(p, received, 1);
    if (p->nfailed > 0 && saga__participant_dead_after_failures(p, m))
        return;
    if (p->keys != NULL && !signed_by_sagad(p, m))
        return;
    if (saga_command_decode(m->payload, m->len, &cmd, &e) != SAGA_OK) {
        char why[1200];
        STAT_ADD(p, malformed, 1);
        snprintf(why, sizeof why, "malformed: %s", e.message);
        saga__participant_dead_letter(p, m, why);
        return;
    }
    if (!reply_to_ours(p, cmd.reply_to)) {
        char why[1200];
        STAT_ADD(p, malformed, 1);
        snprintf(why, sizeof why,
                 "malformed: field \"reply_to\" is \"%.60s\", not this deployment's "
                 "reply topic (%s or %s)",
                 cmd.reply_to, p->reply_topic, p->own_reply_topic);
        saga__participant_dead_letter(p, m, why);
        saga_command_clear(&cmd);
        return;
    }
    {
        /* The trace context travels beside the payload, in a header. */
        rd_kafka_headers_t *hdrs = NULL;
        const void *tp = NULL;
        size_t tplen = 0;
        /* A message made by saga__participant_feed has no headers for
         * librdkafka to read (it is not one of librdkafka's). */
        if (!p->feeding &&
            rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            rd_kafka_header_get_last(hdrs, "traceparent", &tp, &tplen) ==
                RD_KAFKA_RESP_ERR_NO_ERROR &&
            tp != NULL)
            cmd.traceparent = strndup(tp, tplen);
    }
    res.cmd = &cmd;
    h = find_handler(p, cmd.phase, cmd.action);
    if (h == NULL) {
        STAT_ADD(p, unknown_action, 1);
        saga_result_fail(
            &res, "unknown_action", "service %s has no handler for %s %s", p->service,
            cmd.phase == SAGA_PHASE_INVOKE ? "action" : "compensation", cmd.action);
    } else if (p->db != NULL) {
        saga__participant_run_with_barrier(p, h, &cmd, &res, &cached);
    } else {
        saga__participant_run_plain(p, h, &cmd, &res);
        if (!res.set)
            saga_result_retry(&res, 0, "handler for %s set no result", cmd.action);
        saga__participant_output_over_limit(p, &cmd, &res);
    }
    STAT_ADD(p, results_ignored, res.ignored);
    if (res.deferred != NULL) {
        STAT_ADD(p, deferred, 1);
        json_decref(res.output);
        saga_command_clear(&cmd);
        return;
    }
    reply = cached != NULL ? cached : saga__participant_reply_object(&cmd, &res);
    if (reply != NULL) {
        saga__participant_send_reply(p, &cmd, reply, m);
        STAT_ADD(p, handled, 1);
    }
    json_decref(reply);
    json_decref(res.output);
    saga_command_clear(&cmd);
}

/* After a failed reply delivery: the affected commands are consumed again
 * (the barrier makes that safe). */
static void rewind_to_committed(saga_participant *p)
{
    saga__kafka_rewind(p->consumer);
}

/* After a batch whose replies were all delivered: its commands' earlier
 * failures no longer count (a failure that cannot heal counts only in a
 * row). */
static void forget_failed(saga_participant *p)
{
    const rd_kafka_topic_partition_list_t *l = p->processed;
    if (l == NULL || p->nfailed == 0)
        return;
    for (int i = 0; i < p->nfailed;) {
        int done = 0;
        for (int k = 0; k < l->cnt && !done; k++)
            done = l->elems[k].partition == p->failed[i].partition &&
                   p->failed[i].offset < l->elems[k].offset;
        if (done) {
            memmove(&p->failed[i], &p->failed[i + 1],
                    sizeof p->failed[0] * (size_t)(p->nfailed - i - 1));
            p->nfailed--;
        } else {
            i++;
        }
    }
}

int saga_participant_fd(saga_participant *p)
{
    rd_kafka_queue_t *q;
    if (p == NULL)
        return -1;
    if (p->wake[0] >= 0)
        return p->wake[0];
    if (pipe(p->wake) != 0)
        return p->wake[0] = p->wake[1] = -1;
    for (int i = 0; i < 2; i++) {
        fcntl(p->wake[i], F_SETFL, fcntl(p->wake[i], F_GETFL) | O_NONBLOCK);
        fcntl(p->wake[i], F_SETFD, FD_CLOEXEC);
    }
    /* librdkafka writes a byte when the consumer queue becomes non-empty. */
    q = rd_kafka_queue_get_consumer(p->consumer);
    rd_kafka_queue_io_event_enable(q, p->wake[1], "1", 1);
    atomic_store(&p->wake_w, p->wake[1]);
    rd_kafka_queue_destroy(q);
    return p->wake[0];
}

int saga_participant_poll(saga_participant *p, int timeout_ms, saga_error *err)
{
    int n = 0, group_lost = 0;
    if (p == NULL)
        return saga__error_set(err, SAGA_EINVAL, "participant is NULL");
    if (p->wake[0] >= 0) {
        char buf[64];
        while (read(p->wake[0], buf, sizeof buf) > 0)
            ;
    }
    p->warning[0] = '\0';
    p->delivery_failures = 0;
    if (p->log_left_out > 0)
        saga__participant_log_roll(p, saga__mono_ms());
    while (n < BATCH_MAX && !p->stop) {
        rd_kafka_message_t *m =
            rd_kafka_consumer_poll(p->consumer, n == 0 ? timeout_ms : 0);
        if (m == NULL)
            break;
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
                /* E.g. a static member fenced: this consumer will never get
                 * another message. Say so; the process should restart. */
                char why[256];
                rd_kafka_fatal_error(p->consumer, why, sizeof why);
                rd_kafka_message_destroy(m);
                return saga__error_set(err, SAGA_EKAFKA, "fatal Kafka consumer error: %s",
                                       why);
            }
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                saga__participant_warn(p, "consumer: %s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            if (n == 0)
                break;
            continue;
        }
        if (p->db != NULL && p->tx_commands > 1 && !p->group_open && p->solo == 0)
            saga__participant_group_begin(p);
        else if (p->solo > 0 && !p->group_open)
            p->solo--;
        handle_message(p, m);
        saga__kafka_track(&p->processed, m);
        rd_kafka_message_destroy(m);
        n++;
        if (p->group_open &&
            (++p->group_n >= p->tx_commands ||
             saga__mono_ms() - p->group_started >= p->tx_ms) &&
            saga__participant_group_end(p) != 0) {
            group_lost = 1;
            break; /* what follows is consumed again after the rewind */
        }
    }
    if (saga__participant_group_end(p) != 0)
        group_lost = 1;
    rd_kafka_poll(p->producer, 0);
    if (p->wake[1] >= 0 && !p->stop) {
        /* librdkafka writes to the pipe only when a message lands on an
         * empty queue, and we drained the pipe above: commands left waiting
         * (a full batch taken, more queued) would never make the fd
         * readable again. Wake the event loop ourselves. */
        rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(p->consumer);
        if (n >= BATCH_MAX || (q != NULL && rd_kafka_queue_length(q) > 0)) {
            ssize_t w = write(p->wake[1], "1", 1);
            (void)w; /* a full pipe is readable already */
        }
        if (q != NULL)
            rd_kafka_queue_destroy(q);
    }
    if (n == 0)
        return 0;
    if (group_lost) {
        rd_kafka_topic_partition_list_destroy(p->processed);
        p->processed = NULL;
        rd_kafka_flush(p->producer, FLUSH_TIMEOUT_MS);
        rewind_to_committed(p);
        return saga__error_set(err, SAGA_EDB,
                               "a database transaction failed; the commands will be "
                               "redelivered: %s",
                               p->warning);
    }
    if (rd_kafka_flush(p->producer, FLUSH_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        p->delivery_failures > 0) {
        rd_kafka_topic_partition_list_destroy(p->processed);
        p->processed = NULL;
        rewind_to_committed(p);
        return saga__error_set(err, SAGA_EKAFKA,
                               "%d replies not delivered; will redeliver: %s",
                               p->delivery_failures, p->warning);
    }
    forget_failed(p);
    {
        rd_kafka_resp_err_t e = saga__kafka_store_tracked(p->consumer, &p->processed);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
            saga__participant_warn(p, "storing offsets: %s (commands may be redelivered)",
                                   rd_kafka_err2str(e));
    }
    return n;
}

int saga_participant_run(saga_participant *p, saga_error *err)
{
    if (p == NULL)
        return saga__error_set(err, SAGA_EINVAL, "participant is NULL");
    while (!p->stop) {
        int n = saga_participant_poll(p, 200, err);
        /* Delivery problems and a lost group transaction are transient
         * (the batch is redelivered); a fatal consumer error is not. */
        if (n == SAGA_EDB) {
            struct timespec ts = {0, 500 * 1000000L}; /* the database may be restarting */
            nanosleep(&ts, NULL);
            continue;
        }
        if (n < 0 && (n != SAGA_EKAFKA || rd_kafka_fatal_error(p->consumer, NULL, 0)))
            return n;
    }
    return SAGA_OK;
}

void saga_participant_stop(saga_participant *p)
{
    int w;
    if (p == NULL)
        return;
    atomic_store(&p->stop, 1);
    /* An fd-driven loop may be asleep in poll(2): make it readable, so it
     * calls saga_participant_poll and sees the stop (write(2) is
     * async-signal-safe; a full pipe is readable already). */
    w = atomic_load(&p->wake_w);
    if (w >= 0) {
        ssize_t r = write(w, "1", 1);
        (void)r;
    }
}

int saga__participant_feed(saga_participant *p, const char *buf, size_t len,
                           int64_t offset, saga_error *err)
{
    rd_kafka_message_t m = {0};
    int lost;
    if (p->feed_rkt == NULL &&
        (p->feed_rkt = rd_kafka_topic_new(p->producer, p->cmd_topic, NULL)) == NULL)
        return saga__error_set(err, SAGA_EKAFKA, "no topic handle for %s", p->cmd_topic);
    m.rkt = p->feed_rkt;
    m.partition = 0;
    m.offset = offset;
    m.payload = (void *)(uintptr_t)buf;
    m.len = len;
    p->warning[0] = '\0';
    p->delivery_failures = 0;
    if (p->db != NULL && p->tx_commands > 1)
        saga__participant_group_begin(p);
    p->feeding = 1;
    handle_message(p, &m);
    p->feeding = 0;
    lost = saga__participant_group_end(p) != 0;
    if (rd_kafka_flush(p->producer, FLUSH_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return saga__error_set(err, SAGA_EKAFKA, "replies not flushed: %s", p->warning);
    if (lost)
        return saga__error_set(err, SAGA_EDB, "the group transaction failed: %s",
                               p->warning);
    if (p->db != NULL && PQtransactionStatus(p->db) != PQTRANS_IDLE)
        return saga__error_set(err, SAGA_EDB, "a transaction was left open: %s",
                               p->warning);
    if (p->delivery_failures > 0)
        return saga__error_set(err, SAGA_EKAFKA, "%d replies not delivered: %s",
                               p->delivery_failures, p->warning);
    return SAGA_OK;
}
