/* saga_participant.c - a participant's life: created from its options
 * (Kafka producer and consumer, the barrier's database), handlers
 * registered, settings, statistics, freed. The work is in
 * saga_participant_poll.c, _tx.c, _reply.c, _result.c and _log.c. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "saga_participant_private.h"

static char *dup_or(const char *s, const char *dflt)
{
    return strdup(s != NULL && *s != '\0' ? s : dflt);
}

static int participant_new(const saga_participant_options *o, saga_participant **out,
                           saga_error *err)
{
    saga_participant *p;
    rd_kafka_conf_t *conf;
    char errstr[512], group[300], client[300];
    const char *topics[3];
    int rc;

    if (o == NULL || out == NULL || o->brokers == NULL || *o->brokers == '\0' ||
        o->service == NULL || *o->service == '\0')
        return saga__error_set(
            err, SAGA_EINVAL,
            "participant options need brokers and service (non-empty): "
            "brokers is %s, service is %s",
            o == NULL || o->brokers == NULL ? "NULL"
            : *o->brokers == '\0'           ? "\"\""
                                            : "set",
            o == NULL || o->service == NULL ? "NULL"
            : *o->service == '\0'           ? "\"\""
                                            : "set");
    *out = NULL;
    p = calloc(1, sizeof *p);
    if (p == NULL)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    p->wake[0] = p->wake[1] = -1;
    atomic_init(&p->stop, 0);
    atomic_init(&p->wake_w, -1);
    p->tx_commands = o->tx_commands > 0 ? o->tx_commands : 64;
    p->tx_ms = o->tx_ms > 0 ? o->tx_ms : 10;
    p->service = strdup(o->service);
    p->prefix = dup_or(o->topic_prefix, "saga.");
    if (p->service == NULL || p->prefix == NULL) {
        rc = saga__error_set(err, SAGA_ENOMEM, "out of memory");
        goto fail;
    }
    saga__topic_cmd(p->cmd_topic, sizeof p->cmd_topic, p->prefix, p->service);
    saga__topic_reply(p->reply_topic, sizeof p->reply_topic, p->prefix);
    snprintf(p->own_reply_topic, sizeof p->own_reply_topic, "%s.%s", p->reply_topic,
             p->service);
    snprintf(p->dead_topic, sizeof p->dead_topic, "%sdead.%s", p->prefix, p->service);
    p->max_output_bytes = 262144;
    p->max_redeliveries = 3;
    if (o->key_file != NULL && *o->key_file != '\0' &&
        (rc = saga_keys_load(o->key_file, &p->keys, err)) != SAGA_OK)
        goto fail;
    p->log_window = saga__mono_ms();

    if (o->db_url != NULL) {
        /* search_path goes into the connection options, not a SET, so that
         * it survives PQreset() after the server restarts. */
        char options[300] = "";
        const char *keys[] = {"dbname", "options", NULL};
        const char *vals[] = {o->db_url, options, NULL};
        if (o->db_schema != NULL) {
            for (const char *c = o->db_schema; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                      (*c >= '0' && *c <= '9') || *c == '_')) {
                    rc = saga__error_set(err, SAGA_EINVAL,
                                         "db_schema \"%s\": use letters, digits and '_'",
                                         o->db_schema);
                    goto fail;
                }
            snprintf(options, sizeof options, "-c search_path=%.200s", o->db_schema);
        }
        p->db = PQconnectdbParams(keys, vals, 1);
        if (PQstatus(p->db) != CONNECTION_OK) {
            rc = saga__error_set(err, SAGA_EDB, "cannot connect to PostgreSQL: %s",
                                 PQerrorMessage(p->db));
            goto fail;
        }
        /* libpq prints NOTICEs (CREATE TABLE IF NOT EXISTS, a handler's
         * RAISE NOTICE) to stderr by default; a library must not print. The
         * processor stays with the connection across PQreset(). */
        saga__pq_quiet(p->db);
        if ((rc = saga__barrier_init(p->db, err)) != SAGA_OK ||
            (rc = saga__barrier_prepare(p->db, err)) != SAGA_OK)
            goto fail;
    }

    snprintf(client, sizeof client, "saga-svc-%s", p->service);
    if ((conf = saga__kafka_conf(o->brokers, client, err)) == NULL) {
        rc = err ? err->code : SAGA_EKAFKA;
        goto fail;
    }
    if ((rc = saga__kafka_set(conf, "enable.idempotence", "true", err)) != SAGA_OK ||
        (rc = saga__kafka_set(conf, "linger.ms", "1", err)) != SAGA_OK ||
        (rc = saga__kafka_apply_options(conf, o->kafka_options, o->kafka_options_file,
                                        err)) != SAGA_OK) {
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    p->max_message_bytes = saga__kafka_conf_int(conf, "message.max.bytes", 1000000);
    rd_kafka_conf_set_dr_msg_cb(conf, saga__participant_on_delivery);
    rd_kafka_conf_set_opaque(conf, p);
    p->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (p->producer == NULL) {
        rd_kafka_conf_destroy(conf);
        rc = saga__error_set(err, SAGA_EKAFKA, "creating Kafka producer: %s", errstr);
        goto fail;
    }
    /* Its reply topic too: sagad creates it, but a service may start
     * first. Where the broker lets it create none (ACLs), they exist. */
    topics[0] = p->cmd_topic;
    topics[1] = p->dead_topic;
    topics[2] = p->own_reply_topic;
    if ((rc = saga__kafka_ensure_topics(p->producer, topics, 3, 4, 10000, err)) !=
        SAGA_OK)
        goto fail;

    snprintf(group, sizeof group, "saga-svc-%s", p->service);
    if ((rc = saga__kafka_consumer_new(
             o->brokers, client, o->group_id ? o->group_id : group, o->instance_id,
             p->cmd_topic, o->kafka_options, o->kafka_options_file, NULL, &p->consumer,
             err)) != SAGA_OK)
        goto fail;
    *out = p;
    return SAGA_OK;
fail:
    saga_participant_free(p);
    return rc;
}

int saga_participant_on(saga_participant *p, saga_phase phase, const char *name,
                        saga_handler_fn fn, void *arg)
{
    handler *h;
    if (p == NULL || name == NULL || *name == '\0' || fn == NULL)
        return SAGA_EINVAL;
    /* A handler for no phase would never be called: refuse it loudly. */
    if (phase != SAGA_PHASE_INVOKE && phase != SAGA_PHASE_COMPENSATE)
        return SAGA_EINVAL;
    for (int i = 0; i < p->nhandlers; i++)
        if (p->handlers[i].phase == phase && strcmp(p->handlers[i].name, name) == 0)
            return SAGA_EEXIST;
    h = realloc(p->handlers, sizeof *h * (size_t)(p->nhandlers + 1));
    if (h == NULL)
        return SAGA_ENOMEM;
    p->handlers = h;
    h = &p->handlers[p->nhandlers];
    h->name = strdup(name);
    if (h->name == NULL)
        return SAGA_ENOMEM;
    h->phase = phase;
    h->fn = fn;
    h->arg = arg;
    p->nhandlers++;
    return SAGA_OK;
}

#define STAT_GET(field)                                                                  \
    out->field = atomic_load_explicit(&p->stats.field, memory_order_relaxed)

/* The first layout of the options under libsaga.so.1: what every program
 * built for it passes at least. */
#define OPTIONS_V1_SIZE (offsetof(saga_participant_options, tx_ms) + sizeof(int))

int saga_participant_new_sized(const saga_participant_options *opts, size_t opts_size,
                               saga_participant **out, saga_error *err)
{
    saga_participant_options o;
    if (opts == NULL)
        return participant_new(NULL, out, err);
    if (opts_size < OPTIONS_V1_SIZE)
        return saga__error_set(
            err, SAGA_EINVAL,
            "participant options of %zu bytes, fewer than the %zu of "
            "libsaga.so.1's first layout: built against other headers?",
            opts_size, (size_t)OPTIONS_V1_SIZE);
    /* Fields the program does not know keep their zero defaults. A newer
     * program's fields this library does not know must be unset: a setting
     * is never ignored in silence. */
    for (size_t i = sizeof o; i < opts_size; i++)
        if (((const unsigned char *)opts)[i] != 0)
            return saga__error_set(
                err, SAGA_EINVAL,
                "participant options: byte %zu of %zu is set, but this "
                "libsaga (%s) knows only the first %zu: upgrade libsaga",
                i, opts_size, saga_version(), sizeof o);
    memset(&o, 0, sizeof o);
    memcpy(&o, opts, opts_size < sizeof o ? opts_size : sizeof o);
    return participant_new(&o, out, err);
}

static void stats_fill(const saga_participant *p, saga_participant_stats *out)
{
    STAT_GET(handled);
    STAT_GET(duplicates);
    STAT_GET(null_compensations);
    STAT_GET(hanging_refused);
    STAT_GET(malformed);
    STAT_GET(unknown_action);
    STAT_GET(deferred);
    STAT_GET(results_ignored);
    STAT_GET(received);
    STAT_GET(replied_ok);
    STAT_GET(replied_failed);
    STAT_GET(replied_retry);
    STAT_GET(handler_calls);
    STAT_GET(handler_time_ns);
    STAT_GET(dead_lettered);
    STAT_GET(undeliverable);
    STAT_GET(output_too_large);
    STAT_GET(log_suppressed);
    STAT_GET(unauthenticated);
}

int saga_participant_get_stats_sized(const saga_participant *p,
                                     saga_participant_stats *out, size_t out_size)
{
    saga_participant_stats st;
    if (out == NULL)
        return SAGA_EINVAL;
    /* Exactly out_size bytes are written: the caller's struct may be older
     * (smaller) or newer (larger: its extra fields are zero) than ours. */
    memset(out, 0, out_size);
    if (p == NULL)
        return SAGA_EINVAL;
    memset(&st, 0, sizeof st);
    stats_fill(p, &st);
    memcpy(out, &st, out_size < sizeof st ? out_size : sizeof st);
    return SAGA_OK;
}

int saga_participant_set_logger(saga_participant *p, saga_participant_log_fn fn,
                                void *arg)
{
    if (p == NULL)
        return SAGA_EINVAL;
    p->log_fn = fn;
    p->log_arg = arg;
    return SAGA_OK;
}

int saga_participant_set_dead_letter_topic(saga_participant *p, const char *topic,
                                           saga_error *err)
{
    const char *topics[1];
    int rc;
    if (p == NULL)
        return saga__error_set(err, SAGA_EINVAL, "participant is NULL");
    if (topic == NULL || *topic == '\0') {
        p->dead_topic[0] = '\0';
        return SAGA_OK;
    }
    if (!saga_topic_name_valid(topic))
        return saga__error_set(err, SAGA_EINVAL,
                               "dead-letter topic \"%.60s\" is not a Kafka topic name "
                               "(1 to 249 letters, digits, '.', '_', '-')",
                               topic);
    topics[0] = topic;
    if ((rc = saga__kafka_ensure_topics(p->producer, topics, 1, 4, 10000, err)) !=
        SAGA_OK)
        return rc;
    snprintf(p->dead_topic, sizeof p->dead_topic, "%s", topic);
    return SAGA_OK;
}

int saga_participant_set_max_output_bytes(saga_participant *p, int64_t bytes)
{
    if (p == NULL || bytes < 0)
        return SAGA_EINVAL;
    p->max_output_bytes = bytes;
    return SAGA_OK;
}

int saga_participant_set_max_redeliveries(saga_participant *p, int n)
{
    if (p == NULL || n < 0)
        return SAGA_EINVAL;
    p->max_redeliveries = n;
    return SAGA_OK;
}

const char *saga_participant_last_warning(const saga_participant *p)
{
    return p != NULL ? p->warning : "";
}

void saga_participant_free(saga_participant *p)
{
    if (p == NULL)
        return;
    if (p->processed != NULL)
        rd_kafka_topic_partition_list_destroy(p->processed);
    saga__participant_drop_pending(p, 0);
    saga__barrier_batch_clear(&p->group_rows);
    free(p->pending);
    if (p->wake[0] >= 0 && p->consumer != NULL) {
        rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(p->consumer);
        rd_kafka_queue_io_event_enable(q, -1, NULL, 0);
        rd_kafka_queue_destroy(q);
    }
    atomic_store(&p->wake_w, -1);
    for (int i = 0; i < 2; i++)
        if (p->wake[i] >= 0)
            close(p->wake[i]);
    if (p->consumer != NULL) {
        rd_kafka_commit(p->consumer, NULL, 0);
        rd_kafka_consumer_close(p->consumer);
        rd_kafka_destroy(p->consumer);
    }
    if (p->feed_rkt != NULL)
        rd_kafka_topic_destroy(p->feed_rkt);
    if (p->producer != NULL) {
        rd_kafka_flush(p->producer, 5000);
        rd_kafka_destroy(p->producer);
    }
    if (p->db != NULL)
        PQfinish(p->db);
    for (int i = 0; i < p->nhandlers; i++)
        free(p->handlers[i].name);
    free(p->handlers);
    saga_keys_free(p->keys);
    free(p->service);
    free(p->prefix);
    free(p);
}
