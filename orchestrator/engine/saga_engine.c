/* saga_engine.c - making and unmaking the engine (see saga_engine.h):
 * the database connection and schema check, the definitions registered,
 * the Kafka producer and reply consumer, and every command topic the
 * definitions name created if missing. The loop is saga_engine_loop.c.
 *
 * Order of effects per batch, whichever file runs it: PostgreSQL COMMIT,
 * then produce the commands, then commit the Kafka offsets of the replies
 * consumed. A crash between any two of these loses nothing: unsent
 * commands are still in the outbox and are re-sent at start; unconfirmed
 * replies are consumed again and ignored as duplicates. */
#include "saga_engine_state.h"
#include "saga_shared.h"

static void kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    saga_log(level <= 3 ? SAGA_LOG_WARN : SAGA_LOG_DEBUG, "kafka %s: %s", fac, buf);
}

static int setup_kafka(saga_engine *e, saga_error *err)
{
    rd_kafka_conf_t *conf;
    char errstr[512];
    int rc;

    if ((conf = saga__kafka_conf(e->cfg.brokers, "sagad", err)) == NULL)
        return SAGA_EKAFKA;
    rd_kafka_conf_set_log_cb(conf, kafka_log);
    /* Idempotent: a retried produce is written once; per-key order kept. */
    if ((rc = saga__kafka_set(conf, "enable.idempotence", "true", err)) != SAGA_OK ||
        (rc = saga__kafka_set(conf, "linger.ms", "1", err)) != SAGA_OK ||
        /* Back-pressure instead of memory: when Kafka falls behind, produce()
         * waits for deliveries rather than queueing every command started. */
        (rc = saga__kafka_set(conf, "queue.buffering.max.messages", "10000", err)) !=
            SAGA_OK ||
        (rc = saga__kafka_apply_options(conf, e->cfg.kafka_options,
                                        e->cfg.kafka_options_file, err)) != SAGA_OK) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    /* What librdkafka refuses locally as too large, to say so. */
    e->max_message_bytes = saga__kafka_conf_int(conf, "message.max.bytes", 0);
    rd_kafka_conf_set_dr_msg_cb(conf, saga__engine_on_delivery);
    rd_kafka_conf_set_opaque(conf, e);
    e->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (e->producer == NULL) {
        rd_kafka_conf_destroy(conf);
        return saga__error_set(err, SAGA_EKAFKA, "creating the Kafka producer: %s",
                               errstr);
    }
    return SAGA_OK;
}

static void free_topics(char **topics, int n)
{
    for (int i = 0; i < n; i++)
        free(topics[i]);
    free(topics);
}

int saga_engine_new(const saga_engine_config *cfg, saga_definition **defs, int ndefs,
                    saga_engine **out, saga_error *err)
{
    saga_engine *e;
    /* The reply topic and every command topic the definitions name, to be
     * created if missing: as many as there are services. */
    char **topics = NULL;
    int ntopics = 0, captopics = 0, rc, version = 0;

    *out = NULL;
    e = calloc(1, sizeof *e);
    if (e == NULL) {
        for (int i = 0; i < ndefs; i++)
            saga_definition_free(defs[i]);
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    }
    e->cfg = *cfg;
    if (e->cfg.batch_max <= 0)
        e->cfg.batch_max = 500;
    if (e->cfg.timer_interval_ms <= 0)
        e->cfg.timer_interval_ms = 100;
    if (e->cfg.group_id == NULL || e->cfg.group_id[0] == '\0')
        e->cfg.group_id = "sagad";
    if (e->cfg.outbox_lease_s <= 0)
        e->cfg.outbox_lease_s = 10;
    e->wake[0] = e->wake[1] = -1;
    if (e->cfg.observe_interval_ms <= 0)
        e->cfg.observe_interval_ms = 5000;
    e->max_output_bytes = 262144;
    e->cfg.gate.service_limits = NULL; /* parsed below, not kept */
    if (saga_metrics_new(&e->metrics) != SAGA_OK ||
        saga_metrics_register_std(e->metrics, &e->m) != SAGA_OK ||
        saga_health_init(&e->health, 0) != SAGA_OK) {
        rc = saga__error_set(err, SAGA_ENOMEM, "out of memory");
        goto fail_defs;
    }
    e->health_ready = 1;
    if ((rc = saga_gate_new(&cfg->gate, &e->gate, err)) != SAGA_OK)
        goto fail_defs;
    if (cfg->name != NULL && *cfg->name != '\0')
        snprintf(e->owner, sizeof e->owner, "%s", cfg->name);
    else if (gethostname(e->owner, sizeof e->owner - 1) != 0 || e->owner[0] == '\0')
        snprintf(e->owner, sizeof e->owner, "sagad");
    e->wake[0] = e->wake[1] = -1;
    snprintf(e->prefix, sizeof e->prefix, "%s",
             cfg->topic_prefix ? cfg->topic_prefix : "saga.");
    saga__topic_reply(e->reply_topic, sizeof e->reply_topic, e->prefix);
    e->rng = (uint64_t)saga_now_ms() * 2654435761u + (uint64_t)getpid();
    e->defs = saga_defs_new();
    {
        saga_store_opts so = {e->prefix, "sagad"};
        e->batch = saga_batch_new(&so, e->owner, e->cfg.outbox_lease_s);
    }
    if (e->defs == NULL || e->batch == NULL) {
        rc = saga__error_set(err, SAGA_ENOMEM, "out of memory");
        goto fail_defs;
    }
    e->db = PQconnectdb(cfg->db_url);
    if (PQstatus(e->db) != CONNECTION_OK) {
        rc = saga__error_set(err, SAGA_EDB, "cannot connect to PostgreSQL: %s",
                             PQerrorMessage(e->db));
        goto fail_defs;
    }
    saga__pq_quiet(e->db);
    saga_health_set_db(&e->health, 1, NULL);
    if ((rc = saga_migrate_current(e->db, &version, err)) != SAGA_OK)
        goto fail_defs;
    if (version < SAGA_SCHEMA_VERSION) {
        rc = saga__error_set(err, SAGA_ESTATE,
                             "the database schema is at version %d, sagad needs %d: run "
                             "`sagactl migrate`",
                             version, SAGA_SCHEMA_VERSION);
        goto fail_defs;
    }
    /* Child steps: each child exists (in the folder or stored) and none
     * leads back to its parent. */
    for (int i = 0; i < ndefs; i++) {
        saga_def_problems probs = {0};
        rc = saga_store_check_children(e->db, e->defs, defs, ndefs, i, &probs, err);
        if (rc == SAGA_EDEF)
            rc = saga__error_set(err, SAGA_EDEF, "definition %s: %s: %s%s", defs[i]->name,
                                 probs.items[0].where, probs.items[0].message,
                                 probs.count > 1 ? " (and more)" : "");
        if (rc != SAGA_OK)
            goto fail_defs;
    }
    /* The shared reply topic only for an upgrade (shared_replies): each
     * service answers on a topic of its own, created here with its command
     * and dead-letter topics, so that broker ACLs can let it write there
     * and nowhere else. */
    if (e->cfg.shared_replies) {
        if (saga__grow(&topics, &captopics, 1, sizeof *topics, 16) != SAGA_OK ||
            (topics[0] = strdup(e->reply_topic)) == NULL) {
            rc = saga__error_set(err, SAGA_ENOMEM, "out of memory");
            goto fail_defs;
        }
        ntopics = 1;
    }
    for (int i = 0; i < ndefs; i++) {
        saga_definition *d = defs[i];
        int created = 0;
        defs[i] = NULL;
        for (int s = 0; s < d->nsteps; s++) {
            int dup = 0;
            char t[3][256];
            if (d->steps[s].service == NULL)
                continue; /* a wait step: no service, no topics */
            saga__topic_cmd(t[0], sizeof t[0], e->prefix, d->steps[s].service);
            saga__topic_reply_service(t[1], sizeof t[1], e->prefix, d->steps[s].service);
            /* Its dead-letter topic too: with broker ACLs a service may
             * create nothing, so all of a service's topics come from here. */
            snprintf(t[2], sizeof t[2], "%sdead.%s", e->prefix, d->steps[s].service);
            for (int k = 0; k < ntopics; k++)
                dup |= strcmp(topics[k], t[0]) == 0;
            if (dup)
                continue;
            if (saga__engine_know_service(e, d->steps[s].service) != 0) {
                for (int k = i; k < ndefs; k++)
                    saga_definition_free(k == i ? d : defs[k]);
                rc = saga__error_set(err, SAGA_ENOMEM, "out of memory");
                goto fail;
            }
            if ((rc = saga__engine_load_keys(e, d->steps[s].service, err)) != SAGA_OK) {
                for (int k = i; k < ndefs; k++)
                    saga_definition_free(k == i ? d : defs[k]);
                goto fail;
            }
            if (saga__grow(&topics, &captopics, ntopics + 3, sizeof *topics, 16) !=
                SAGA_OK) {
                rc = SAGA_ENOMEM;
            } else {
                for (int k = 0; k < 3 && rc == SAGA_OK; k++)
                    if ((topics[ntopics] = strdup(t[k])) == NULL)
                        rc = SAGA_ENOMEM;
                    else
                        ntopics++;
            }
            if (rc != SAGA_OK) {
                for (int k = i; k < ndefs; k++)
                    saga_definition_free(k == i ? d : defs[k]);
                rc = saga__error_set(err, SAGA_ENOMEM, "out of memory");
                goto fail;
            }
        }
        {
            char name[128];
            snprintf(name, sizeof name, "%s", d->name);
            if ((rc = saga_store_register_definition(e->db, e->defs, d, &created, err)) !=
                SAGA_OK) {
                for (int k = i + 1; k < ndefs; k++)
                    saga_definition_free(defs[k]);
                goto fail;
            }
            saga_log(SAGA_LOG_INFO, "definition %s: %s", name,
                     created ? "new version stored" : "unchanged");
            /* Every outcome series exists from the start, at 0, so that
             * increase() sees the first failure (a series that appears at 1
             * has no earlier sample to increase from). */
            {
                static const char *const outcomes[] = {"completed", "compensated",
                                                       "failed"};
                for (size_t k = 0; k < sizeof outcomes / sizeof outcomes[0]; k++)
                    saga_metric_add(e->m.sagas_finished,
                                    (const char *[]){name, outcomes[k]}, 0);
                saga_metric_add(e->m.sagas_started, (const char *[]){name}, 0);
            }
        }
    }
    if ((rc = saga_store_exec(e->db, "LISTEN saga_outbox", err)) != SAGA_OK ||
        (rc = saga_batch_prepare(e->db, err)) != SAGA_OK)
        goto fail;
    e->db_ready = 1;
    saga__engine_read_limits(e);
    if (pipe(e->wake) != 0 || fcntl(e->wake[0], F_SETFL, O_NONBLOCK) != 0 ||
        fcntl(e->wake[1], F_SETFL, O_NONBLOCK) != 0) {
        rc = saga__error_set(err, SAGA_EIO, "creating the wake-up pipe failed");
        goto fail;
    }
    if ((rc = setup_kafka(e, err)) != SAGA_OK)
        goto fail;
    for (int k = 0; k < ntopics; k += 64)
        if ((rc = saga__kafka_ensure_topics(e->producer, (const char *const *)topics + k,
                                            ntopics - k < 64 ? ntopics - k : 64, 4, 10000,
                                            err)) != SAGA_OK)
            goto fail;
    saga_health_set_broker(&e->health, 1, NULL);
    /* Subscribe once the reply topics surely exist: by pattern, so that the
     * reply topic of a service first named by a definition deployed later
     * is read too (found within the metadata refresh, 10 s; a reply that
     * waits for it is read from the topic's start). The shared topic
     * matches too: its replies are refused, and said so, unless
     * shared_replies. */
    {
        char pattern[600], options[1200];
        size_t n = 0;
        n += (size_t)snprintf(pattern, sizeof pattern, "^");
        for (const char *c = e->prefix; *c && n + 3 < sizeof pattern; c++) {
            if (strchr(".^$*+?()[]{}|\\", *c) != NULL)
                pattern[n++] = '\\';
            pattern[n++] = *c;
        }
        snprintf(pattern + n, sizeof pattern - n, "reply(\\..+)?$");
        snprintf(e->reply_pattern, sizeof e->reply_pattern, "%s", pattern);
        snprintf(options, sizeof options, "topic.metadata.refresh.interval.ms=10000%s%s",
                 e->cfg.kafka_options && *e->cfg.kafka_options ? "," : "",
                 e->cfg.kafka_options ? e->cfg.kafka_options : "");
        if ((rc = saga__kafka_consumer_new(e->cfg.brokers, "sagad", e->cfg.group_id,
                                           e->cfg.instance_id, pattern, options,
                                           e->cfg.kafka_options_file, kafka_log,
                                           &e->consumer, err)) != SAGA_OK)
            goto fail;
    }
    {
        /* Wake the loop's poll() when a reply or a delivery report comes. */
        rd_kafka_queue_t *cq = rd_kafka_queue_get_consumer(e->consumer);
        rd_kafka_queue_t *pq = rd_kafka_queue_get_main(e->producer);
        rd_kafka_queue_io_event_enable(cq, e->wake[1], "1", 1);
        rd_kafka_queue_io_event_enable(pq, e->wake[1], "1", 1);
        rd_kafka_queue_destroy(cq);
        rd_kafka_queue_destroy(pq);
    }
    free_topics(topics, ntopics);
    *out = e;
    return SAGA_OK;
fail_defs:
    for (int i = 0; i < ndefs; i++) {
        saga_definition_free(defs[i]);
        defs[i] = NULL;
    }
fail:
    free_topics(topics, ntopics);
    saga_engine_free(e);
    return rc;
}

void saga_engine_free(saga_engine *e)
{
    if (e == NULL)
        return;
    if (e->consumer != NULL) {
        rd_kafka_consumer_close(e->consumer);
        rd_kafka_destroy(e->consumer);
    }
    if (e->feed_rkt != NULL)
        rd_kafka_topic_destroy(e->feed_rkt);
    if (e->producer != NULL) {
        rd_kafka_flush(e->producer, 5000);
        rd_kafka_destroy(e->producer);
    }
    if (e->db != NULL)
        PQfinish(e->db);
    saga_defs_free(e->defs);
    saga_batch_free(e->batch);
    if (e->wake[0] >= 0)
        close(e->wake[0]);
    if (e->wake[1] >= 0)
        close(e->wake[1]);
    free(e->inflight.slots);
    free(e->delivered);
    saga_gate_free(e->gate);
    saga__engine_free_keys(e);
    saga__engine_free_services(e);
    saga_tally_free(&e->tally);
    free(e->failed);
    free(e->dead);
    free(e->refused);
    saga_metrics_free(e->metrics);
    if (e->health_ready)
        saga_health_cleanup(&e->health);
    free(e);
}
