/* saga_engine_loop.c - the engine's loop: wait for a reply, a delivery
 * report, a NOTIFY or a due timer; take a batch of replies
 * (saga_engine_replies.c), then due timers (saga_engine_timers.c), start
 * requests (saga_engine_starts.c), the outbox scan and refused commands
 * (saga_engine_send.c, saga_engine_refused.c); observe the database's
 * gauges now and then. Also the test hooks of saga_engine_internal.h. */
#include "saga_engine_internal.h"
#include "saga_engine_state.h"
#include "saga_shared.h"

/* Did anyone NOTIFY saga_outbox? A start request (payload "start", as
 * libsaga's client and sagad's API send) only needs the start requests
 * read: NOTIFY_START. Anything else (an operator's repair wrote commands, a
 * signal came) needs the whole scan: NOTIFY_SCAN. Starting sagas must not
 * mean scanning the outbox each time: under load that was a pass over
 * every command in flight, many times a second, for nothing. */
enum { NOTIFY_START = 1, NOTIFY_SCAN = 2 };
static int notified(saga_engine *e)
{
    PGnotify *n;
    int any = 0;
    if (PQconsumeInput(e->db) == 0)
        return 0;
    while ((n = PQnotifies(e->db)) != NULL) {
        any |= n->extra != NULL && strcmp(n->extra, "start") == 0 ? NOTIFY_START
                                                                  : NOTIFY_SCAN;
        PQfreemem(n);
    }
    return any;
}

/* Every few seconds: free bulkhead slots whose time ran out, read the
 * gauges that come from the database, publish the services' breaker and
 * bulkhead state, and check the broker answers (for /readyz). */
void saga__engine_observe(saga_engine *e)
{
    saga_error err = {0};
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t ke;
    int64_t now = saga_now_ms();

    int with_finished = saga__mono_ms() >= e->next_finished_ms;

    saga_gate_expire(e->gate, now);
    /* An open breaker turns half-open by the clock alone, a probe may
     * have been lost: look at them here too, not only after commits. */
    saga__engine_log_breakers(e, now);
    saga__engine_warn_flush(&e->unknown_saga, "replies for unknown sagas rejected");
    saga__engine_warn_flush(&e->malformed, "malformed replies set aside");
    saga__engine_warn_flush(&e->set_aside, "items that could not be set aside");
    saga__engine_warn_flush(&e->rolled_replies, "reply batches rolled back");
    saga__engine_warn_flush(&e->rolled_timers, "timer batches rolled back");
    saga__engine_warn_flush(&e->rolled_starts, "start request batches rolled back");
    saga__engine_warn_flush(&e->big_outputs, "outputs over max_output_bytes");
    if (saga__engine_ensure_db(e) == 0) {
        saga__engine_read_limits(e);
        if (with_finished)
            e->next_finished_ms =
                saga__mono_ms() + (int64_t)FINISHED_EVERY * e->cfg.observe_interval_ms;
        if (saga_observe_sagas(e->db, with_finished, &e->m, &err) != SAGA_OK ||
            saga_observe_services(e->db, e->owner, e->gate, now, &e->m, &err) !=
                SAGA_OK) {
            saga_log(SAGA_LOG_WARN, "%s", err.message);
            saga_health_set_db(&e->health, 0, err.message);
        } else {
            saga_health_set_db(&e->health, 1, NULL);
        }
    }
    /* Brokers only (no topic list): a small request, 1 s at most. */
    ke = rd_kafka_metadata(e->producer, 0, NULL, &md, 1000);
    if (ke == RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_metadata_destroy(md);
        saga_health_set_broker(&e->health, 1, NULL);
    } else {
        saga_health_set_broker(&e->health, 0, rd_kafka_err2str(ke));
    }
}

/* Sleep until a reply or a delivery report arrives (librdkafka writes to
 * the wake pipe), PostgreSQL sends a notification, or timeout_ms pass. */
static void wait_for_work(saga_engine *e, int timeout_ms)
{
    struct pollfd fds[2] = {{.fd = e->wake[0], .events = POLLIN},
                            {.fd = PQsocket(e->db), .events = POLLIN}};
    char buf[64];
    if (timeout_ms <= 0)
        return;
    if (poll(fds, fds[1].fd >= 0 ? 2 : 1, timeout_ms) > 0 && (fds[0].revents & POLLIN))
        while (read(e->wake[0], buf, sizeof buf) > 0)
            ;
}

int saga_engine_run(saga_engine *e, saga_error *err)
{
    rd_kafka_message_t **msgs = calloc((size_t)e->cfg.batch_max, sizeof *msgs);
    rd_kafka_queue_t *cq = rd_kafka_queue_get_consumer(e->consumer);
    int64_t next_timer = 0, next_scan = 0, next_observe = 0, last_scan = 0;
    int64_t next_starts = INT64_MAX;

    if (msgs == NULL || cq == NULL) {
        free(msgs);
        if (cq != NULL)
            rd_kafka_queue_destroy(cq);
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    }
    saga_log(SAGA_LOG_INFO, "sagad running as %s: replies from %s.<service>%s", e->owner,
             e->reply_topic,
             e->cfg.shared_replies ? " and, for the upgrade, the shared " : "");
    if (e->cfg.shared_replies)
        saga_log(SAGA_LOG_WARN,
                 "--shared-replies: replies on %s are accepted for any step; turn it off "
                 "once the upgrade is done (docs/OPERATIONS.md)",
                 e->reply_topic);
    while (!e->stop) {
        int n, full, db_ok;
        int64_t now, wait;
        /* Take what has arrived, up to a batch, without waiting: replies
         * that come in while a batch is being committed make the next one. */
        ssize_t k;
        saga_health_tick(&e->health, saga_health_now_ms());
        saga_metric_add(e->m.loop_ticks, NULL, 1);
        /* No database, no replies: they stay in Kafka until it is back. */
        db_ok = saga__engine_ensure_db(e) == 0;
        k = db_ok && saga__mono_ms() >= e->replies_after_ms
                ? rd_kafka_consume_batch_queue(cq, 0, msgs, (size_t)e->cfg.batch_max)
                : 0;
        n = k > 0 ? (int)k : 0;
        full = n == e->cfg.batch_max;
        if (n > 0) {
            int valid = 0;
            for (int i = 0; i < n; i++) {
                if (msgs[i]->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                    msgs[valid++] = msgs[i];
                    continue;
                }
                if (msgs[i]->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                    saga_log(SAGA_LOG_WARN, "reply consumer: %s",
                             rd_kafka_message_errstr(msgs[i]));
                rd_kafka_message_destroy(msgs[i]);
            }
            if (valid > 0)
                saga__engine_process_replies(e, msgs, valid);
            for (int i = 0; i < valid; i++)
                rd_kafka_message_destroy(msgs[i]);
        }
        now = saga__mono_ms();
        if (PQstatus(e->db) == CONNECTION_OK) {
            int why = notified(e);
            if (why & NOTIFY_SCAN)
                next_scan = 0;
            else if (why & NOTIFY_START)
                atomic_store(&e->kicked, 1);
        }
        /* Starts written by this process's API: soon, but together; only
         * the start requests (signals and the outbox keep their scan). */
        /* ... and a child started, to undo or ended by what we committed
         * (its start request too). */
        if ((atomic_load(&e->kicked) || e->children_due) && next_starts == INT64_MAX)
            next_starts = last_scan + START_COALESCE_MS;
        if (now >= next_starts && now < next_scan) {
            atomic_store(&e->kicked, 0);
            next_starts = INT64_MAX;
            last_scan = now;
            while (saga__engine_process_start_requests(e) == START_BATCH && !e->stop)
                ;
            if (e->children_due)
                saga__engine_process_children(e);
        }
        if (now >= next_timer) {
            saga__engine_wake_early(e);
            while (saga__engine_process_timers(e) == TIMER_CLAIM_LIMIT && !e->stop)
                ;
            next_timer = now + e->cfg.timer_interval_ms;
        }
        if (now >= next_scan) {
            atomic_store(&e->kicked, 0);
            next_starts = INT64_MAX;
            last_scan = now;
            while (saga__engine_process_start_requests(e) == START_BATCH && !e->stop)
                ;
            saga__engine_process_signals(e);
            saga__engine_process_children(e);
            saga__engine_scan_outbox(e);
            next_scan = now + OUTBOX_SCAN_MS;
        }
        rd_kafka_poll(e->producer, 0);
        saga__engine_forget_delivered(e);
        saga__engine_fail_refused(e);
        if (now >= next_observe) {
            saga__engine_observe(e);
            next_observe = saga__mono_ms() + e->cfg.observe_interval_ms;
        }
        {
            char why[256];
            if (rd_kafka_fatal_error(e->consumer, why, sizeof why) ||
                rd_kafka_fatal_error(e->producer, why, sizeof why)) {
                /* Nothing more can be consumed or sent safely: stop, and
                 * let the supervisor start a fresh process. */
                free(msgs);
                rd_kafka_queue_destroy(cq);
                rd_kafka_flush(e->producer, 10000);
                saga__engine_forget_delivered(e);
                return saga__error_set(err, SAGA_EKAFKA, "fatal Kafka error: %s", why);
            }
        }
        if (full)
            continue;
        now = saga__mono_ms();
        wait = (next_timer < next_scan ? next_timer : next_scan) - now;
        if (next_starts - now < wait)
            wait = next_starts - now;
        if (next_observe - now < wait)
            wait = next_observe - now;
        if (!db_ok || saga__mono_ms() < e->replies_after_ms)
            wait = wait < 250 ? wait : 250;
        wait_for_work(e, (int)(wait > 0 ? wait : 0));
    }
    free(msgs);
    rd_kafka_queue_destroy(cq);
    saga_log(SAGA_LOG_INFO, "stopping: waiting for %zu command(s) in flight",
             e->inflight.n);
    rd_kafka_flush(e->producer, 10000);
    saga__engine_forget_delivered(e);
    rd_kafka_commit(e->consumer, NULL, 0);
    return SAGA_OK;
}

void saga_engine_kick(saga_engine *e)
{
    if (e == NULL || atomic_exchange(&e->kicked, 1) != 0)
        return; /* already kicked: one wake is enough */
    if (write(e->wake[1], "k", 1) < 0) {
        /* The pipe is full: the loop is awake already. */
    }
}

void saga_engine_stop(saga_engine *e)
{
    if (e != NULL)
        e->stop = 1;
}

saga_metrics *saga_engine_metrics(saga_engine *e)
{
    return e != NULL ? e->metrics : NULL;
}

saga_health *saga_engine_health(saga_engine *e)
{
    return e != NULL ? &e->health : NULL;
}

void saga_engine_get_stats(const saga_engine *e, saga_engine_stats *out)
{
    if (e != NULL && out != NULL)
        *out = e->stats;
}

int saga__engine_turn(saga_engine *e)
{
    if (saga__engine_ensure_db(e) != 0)
        return SAGA_EDB;
    saga__engine_wake_early(e);
    while (saga__engine_process_timers(e) == TIMER_CLAIM_LIMIT && !e->stop)
        ;
    while (saga__engine_process_start_requests(e) == START_BATCH && !e->stop)
        ;
    saga__engine_process_signals(e);
    saga__engine_process_children(e);
    saga__engine_scan_outbox(e);
    rd_kafka_poll(e->producer, 0);
    saga__engine_forget_delivered(e);
    saga__engine_fail_refused(e);
    return SAGA_OK;
}

int saga__engine_feed_replies(saga_engine *e, const char *const *bufs, const size_t *lens,
                              int n, int64_t first_offset)
{
    rd_kafka_message_t *m, **msgs;
    int rc;
    if (n <= 0)
        return SAGA_OK;
    if (e->feed_rkt == NULL &&
        (e->feed_rkt = rd_kafka_topic_new(e->producer, e->reply_topic, NULL)) == NULL)
        return SAGA_EKAFKA;
    m = calloc((size_t)n, sizeof *m);
    msgs = calloc((size_t)n, sizeof *msgs);
    if (m == NULL || msgs == NULL) {
        free(m);
        free(msgs);
        return SAGA_ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        m[i].rkt = e->feed_rkt;
        m[i].partition = 0;
        m[i].offset = first_offset + i;
        m[i].payload = (void *)(uintptr_t)bufs[i];
        m[i].len = lens[i];
        msgs[i] = &m[i];
    }
    if (saga__engine_ensure_db(e) != 0) {
        free(m);
        free(msgs);
        return SAGA_EDB;
    }
    e->feeding = 1;
    rc = saga__engine_process_replies(e, msgs, n);
    e->feeding = 0;
    rd_kafka_poll(e->producer, 0);
    free(m);
    free(msgs);
    return rc;
}
