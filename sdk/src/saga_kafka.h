/* Internal (not installed): Kafka helpers shared by the SDK and sagad. */
#ifndef SAGA_KAFKA_H
#define SAGA_KAFKA_H

#include <librdkafka/rdkafka.h>

#include "saga/error.h"

/* Topic names: <prefix>cmd.<service> and <prefix>reply. */
int saga__topic_cmd(char *buf, size_t size, const char *prefix, const char *service);
int saga__topic_reply(char *buf, size_t size, const char *prefix);

/* A config with bootstrap servers set and a client.id; NULL + err on failure.
 * The caller owns it (rd_kafka_new takes it over on success). */
rd_kafka_conf_t *saga__kafka_conf(const char *brokers, const char *client_id,
                                  saga_error *err);

/* Apply "key=value,key=value" librdkafka settings (NULL or "": none);
 * the error names the entry that was refused. */
int saga__kafka_apply_options(rd_kafka_conf_t *conf, const char *options,
                              saga_error *err);

/* conf's integer setting key (e.g. "message.max.bytes"), or dflt when it
 * cannot be read. */
long long saga__kafka_conf_int(const rd_kafka_conf_t *conf, const char *key,
                               long long dflt);

/* Set one property, reporting the key on failure. */
int saga__kafka_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                    saga_error *err);

/* A consumer in group_id (static member instance_id when not NULL/empty)
 * that commits nothing by itself, starts new groups at the earliest offset,
 * and is subscribed to topic; options (saga__kafka_apply_options) are
 * applied last. log_cb (NULL: silent) gets librdkafka's logs.
 * *out is the caller's (rd_kafka_consumer_close + rd_kafka_destroy). */
int saga__kafka_consumer_new(const char *brokers, const char *client_id,
                             const char *group_id, const char *instance_id,
                             const char *topic, const char *options,
                             void (*log_cb)(const rd_kafka_t *, int, const char *,
                                            const char *),
                             rd_kafka_t **out, saga_error *err);

/* Create the topics that do not exist yet (an existing topic is fine).
 * Uses rk's connection; waits at most timeout_ms. */
int saga__kafka_ensure_topics(rd_kafka_t *rk, const char *const *topics, int n,
                              int partitions, int timeout_ms, saga_error *err);

/* Remember that msg was processed: offset+1 for its partition in list
 * (created on first use). Processed offsets are stored (and later
 * committed) only after the effects of the batch are durable. */
void saga__kafka_track(rd_kafka_topic_partition_list_t **list,
                       const rd_kafka_message_t *msg);

/* Store the tracked offsets, to be committed by librdkafka within
 * auto.commit.interval.ms (and at close); frees and clears *list. Call
 * once what the messages caused is durable. */
rd_kafka_resp_err_t saga__kafka_store_tracked(rd_kafka_t *consumer,
                                              rd_kafka_topic_partition_list_t **list);

/* Seek the consumer's partitions back to the last stored offsets (after
 * committing them), so what follows them is consumed again. Blocks for a
 * broker round trip or two: for errors, not for every batch. */
void saga__kafka_rewind(rd_kafka_t *consumer);
#endif
