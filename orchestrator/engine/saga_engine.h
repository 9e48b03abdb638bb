/* The engine: sagad's loop. Takes a batch of events (replies from Kafka,
 * due timers from PostgreSQL), runs the machine on the sagas they touch,
 * commits every transition in one PostgreSQL transaction, then sends the
 * commands (outbox), then commits the consumed offsets. */
#ifndef SAGA_ENGINE_H
#define SAGA_ENGINE_H

#include <stdint.h>

#include "saga/error.h"
#include "saga_definition.h"
#include "saga_gate.h"
#include "saga_http.h"
#include "saga_metrics.h"

typedef struct saga_engine saga_engine;

typedef struct saga_engine_config {
    const char *db_url;       /* required */
    const char *brokers;      /* required */
    const char *topic_prefix; /* default "saga." */
    const char *group_id;     /* default "sagad" */
    const char
        *instance_id;      /* Kafka static membership (sagad --instance-id); NULL: none */
    int batch_max;         /* replies per transaction; default 500 */
    int timer_interval_ms; /* how often due timers are claimed; default 100 */
    /* This instance's name on the outbox rows it sends (default: the host
     * name). Several sagad share one database: each sends the commands it
     * committed; rows of an instance that died are taken over when their
     * lease (outbox_lease_s, default 10) runs out, and at once by an
     * instance restarted under the same name. */
    const char *name;
    int outbox_lease_s;
    /* librdkafka settings "key=value,..." applied last to sagad's producer
     * and consumer (e.g. "linger.ms=0,fetch.wait.max.ms=10"); NULL: none. */
    const char *kafka_options;
    /* A file of librdkafka settings, one key=value a line (values may hold
     * commas), applied after kafka_options: TLS and SASL settings and
     * their secrets, off the command line and out of the environment. */
    const char *kafka_options_file;
    /* A directory of per-service signing keys, <service>.key
     * (saga/sign.h): commands to a service with a file are signed and its
     * replies must be; NULL: nothing is signed. */
    const char *key_dir;
    /* Also accept replies on the shared <prefix>reply topic (as sagad
     * before 0.3 asked for them), from the step's service or not: for an
     * upgrade only, while commands sent before it are answered. */
    int shared_replies;
    /* Circuit breaker and bulkhead per participant service (saga_gate.h);
     * zeros: breaker on with its defaults, no cap. */
    saga_gate_config gate;
    /* How often gauges are read from the database and the services'
     * state is published (saga.service_health); default 5000 ms. */
    int observe_interval_ms;
} saga_engine_config;

typedef struct saga_engine_stats {
    uint64_t replies_applied;
    uint64_t replies_ignored;  /* duplicates and stale replies */
    uint64_t replies_rejected; /* unknown saga or step, impossible attempt */
    uint64_t malformed;        /* not a valid reply at all */
    uint64_t timers_fired;
    uint64_t commands_sent; /* confirmed by Kafka */
    uint64_t send_failures;
    uint64_t transactions;
    uint64_t dead_letters;     /* replies, timers, start requests set aside */
    uint64_t commands_refused; /* too large for the broker: message_too_large */
} saga_engine_stats;

/* Connect to PostgreSQL and Kafka, check the schema is migrated, register
 * the definitions (ownership of defs[i] passes to the engine, also on
 * failure; the array itself stays the caller's), create the topics. */
int saga_engine_new(const saga_engine_config *cfg, saga_definition **defs, int ndefs,
                    saga_engine **out, saga_error *err);

/* Run until saga_engine_stop(); then finish the batch, wait for pending
 * sends, commit offsets and return SAGA_OK. */
int saga_engine_run(saga_engine *e, saga_error *err);

/* Async-signal-safe. */
void saga_engine_stop(saga_engine *e);

/* Start requests were just written in this process (the HTTP API): look
 * at them soon, without a NOTIFY (whose commit-time lock serialises every
 * writer's commits). Kicks that come close together are taken together,
 * START_COALESCE_MS apart at most, so that a busy API makes large start
 * batches. Any thread; async-signal-unsafe. NULL: nothing. */
void saga_engine_kick(saga_engine *e);

void saga_engine_get_stats(const saga_engine *e, saga_engine_stats *out);

/* The engine's metrics registry and health (borrowed: valid until
 * saga_engine_free). Both are thread-safe, so an HTTP server thread may
 * render and check them while the engine runs (saga_http.h). */
saga_metrics *saga_engine_metrics(saga_engine *e);
saga_health *saga_engine_health(saga_engine *e);

void saga_engine_free(saga_engine *e);

#endif
