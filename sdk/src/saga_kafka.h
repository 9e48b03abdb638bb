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
rd_kafka_conf_t *saga__kafka_conf(const char *brokers, const char *client_id, saga_error *err);

/* Set one property, reporting the key on failure. */
int saga__kafka_set(rd_kafka_conf_t *conf, const char *key, const char *value, saga_error *err);

/* Create the topics that do not exist yet (an existing topic is fine).
 * Uses rk's connection; waits at most timeout_ms. */
int saga__kafka_ensure_topics(rd_kafka_t *rk, const char *const *topics, int n, int partitions,
                              int timeout_ms, saga_error *err);

#endif
