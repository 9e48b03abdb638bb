/* saga_shared.h - the one internal header libsaga and the orchestrator
 * share (not installed). Everything else the orchestrator uses from the SDK
 * comes through the public headers in sdk/include/saga/.
 *
 * It holds what both sides truly need the same way: the clocks, one growth
 * helper for arrays, the topic names, the Kafka consumer and offset
 * bookkeeping, and the libpq notice silencer. It includes neither
 * rdkafka.h nor libpq-fe.h (their types are only named here), so the pure
 * core may include it for the growth helper and topic names; calling the
 * Kafka or libpq helpers needs the library's own header as well.
 *
 * Threads: every function here is safe from any thread on its own
 * arguments. Errors are returned (saga_error), never printed. */
#ifndef SAGA_SHARED_H
#define SAGA_SHARED_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "saga/error.h"

/* ---- errors ---- */

/* Fill err (if not NULL) with code and a printf-style message (truncated
 * to fit err->message); returns code so that
 * `return saga__error_set(err, SAGA_EINVAL, "...")` reads well. Thread-safe
 * as long as no other thread uses the same err. */
/* s (len bytes) was cut at len: if that cut a UTF-8 character in two,
 * end s before it, so that the text stays valid UTF-8 (JSON needs it). */
void saga__utf8_trim_tail(char *s, size_t len);

int saga__error_set(saga_error *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* n with thousands separators ("2,097,152") in buf: sizes in messages are
 * read by people, and the database's limit triggers write them so. */
const char *saga__bytes_text(int64_t n, char *buf, size_t size);

/* ---- clocks ---- */

/* Monotonic nanoseconds since an arbitrary start. */
static inline int64_t saga__mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t saga__mono_us(void)
{
    return saga__mono_ns() / 1000;
}

static inline int64_t saga__mono_ms(void)
{
    return saga__mono_ns() / 1000000;
}

/* Wall-clock milliseconds since the Unix epoch. */
static inline int64_t saga__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- growth ---- */

/* Make room for need elements of size elem in the array whose address is
 * items (a T ** for a T *array) of capacity *cap, doubling from first (8
 * when 0). On failure nothing changes and SAGA_ENOMEM is returned; the old
 * array stays valid. The pointer is read and written with memcpy, so any
 * object pointer type may be passed without breaking aliasing rules. */
static inline int saga__grow(void *items, int *cap, int need, size_t elem, int first)
{
    void *old, *bigger;
    long long n;
    if (need <= *cap)
        return SAGA_OK;
    n = *cap > 0 ? *cap : (first > 0 ? first : 8);
    while (n < need)
        n *= 2;
    if (n > 0x3fffffff || (size_t)n > SIZE_MAX / elem)
        return SAGA_ENOMEM;
    memcpy(&old, items, sizeof old);
    if ((bigger = realloc(old, (size_t)n * elem)) == NULL)
        return SAGA_ENOMEM;
    memcpy(items, &bigger, sizeof bigger);
    *cap = (int)n;
    return SAGA_OK;
}

/* ---- secrets ---- */

/* Open the file at path for reading when others may neither read nor
 * write it (it holds a secret); NULL with err (SAGA_EIO, starting with
 * what, e.g. "key file ") saying why otherwise. The caller fcloses it. */
FILE *saga__open_secret(const char *path, const char *what, saga_error *err);

/* The first line of the file at path that is neither blank nor a '#'
 * comment, trimmed, into *out (new, the caller frees it). The file must
 * not be readable or writable by others: SAGA_EIO says so (and when it
 * cannot be read); SAGA_EINVAL when it holds no such line. The secret is
 * never copied into err. */
int saga__read_secret(const char *path, char **out, saga_error *err);

/* The SHA-256 of len bytes at data as 64 lower-case hex digits and a NUL
 * (libcrypto). 0, or -1 when libcrypto fails. */
int saga__sha256_hex(const void *data, size_t len, char out[65]);

/* ---- saga ids ---- */

/* A new saga id into out (36 characters and a NUL): a UUID of version 7
 * (RFC 9562), the wall clock's milliseconds then 74 random bits from
 * libcrypto. Time-ordered on purpose: the indexes keyed by saga id (the
 * saga, its steps, its history, a participant's barrier) then take new
 * rows at their right-hand edge instead of on a random page, so a saga
 * dirties fewer pages and a checkpoint is followed by fewer full-page
 * images (docs/PERFORMANCE.md, "How the cost is kept down"). SAGA_EIO
 * when libcrypto has no randomness to give. */
int saga__id_new(char out[37], saga_error *err);

/* ---- topic names ---- */

/* <prefix>cmd.<service> and <prefix>reply (prefix NULL: "saga."), as
 * snprintf writes them: the result is the full name's length, size or more
 * when it was cut. */
int saga__topic_cmd(char *buf, size_t size, const char *prefix, const char *service);
int saga__topic_reply(char *buf, size_t size, const char *prefix);
/* <prefix>reply.<service>: where a service's replies go (and nobody
 * else's: broker ACLs can then confine each service to its own). */
int saga__topic_reply_service(char *buf, size_t size, const char *prefix,
                              const char *service);

/* ---- Kafka (callers include <librdkafka/rdkafka.h>) ---- */

typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_conf_s rd_kafka_conf_t;
typedef struct rd_kafka_message_s rd_kafka_message_t;
typedef struct rd_kafka_topic_partition_list_s rd_kafka_topic_partition_list_t;

/* A config with bootstrap servers set and a client.id; NULL + err on failure.
 * The caller owns it (rd_kafka_new takes it over on success). */
rd_kafka_conf_t *saga__kafka_conf(const char *brokers, const char *client_id,
                                  saga_error *err);

/* Apply "key=value,key=value" librdkafka settings (NULL or "": none),
 * then those of file (NULL or "": none; one key=value a line, values may
 * hold commas, '#' comments); the error names the entry (the file and
 * line) that was refused, never a secret's value. */
int saga__kafka_apply_options(rd_kafka_conf_t *conf, const char *options,
                              const char *file, saga_error *err);

/* conf's integer setting key (e.g. "message.max.bytes"), or dflt when it
 * cannot be read. */
long long saga__kafka_conf_int(const rd_kafka_conf_t *conf, const char *key,
                               long long dflt);

/* Set one property, reporting the key on failure. */
int saga__kafka_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                    saga_error *err);

/* A consumer in group_id (static member instance_id when not NULL/empty)
 * that commits nothing by itself, starts new groups at the earliest offset,
 * and is subscribed to topic (a name, or a regular expression starting
 * with '^'); options and options_file (saga__kafka_apply_options) are
 * applied last. log_cb (NULL: silent) gets librdkafka's logs.
 * *out is the caller's (rd_kafka_consumer_close + rd_kafka_destroy). */
int saga__kafka_consumer_new(const char *brokers, const char *client_id,
                             const char *group_id, const char *instance_id,
                             const char *topic, const char *options,
                             const char *options_file,
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
 * once what the messages caused is durable. Returns an rd_kafka_resp_err_t
 * (0: stored). */
int saga__kafka_store_tracked(rd_kafka_t *consumer,
                              rd_kafka_topic_partition_list_t **list);

/* Seek the consumer's partitions back to the last stored offsets (after
 * committing them), so what follows them is consumed again. Blocks for a
 * broker round trip or two: for errors, not for every batch. */
void saga__kafka_rewind(rd_kafka_t *consumer);

/* ---- libpq (callers include <libpq-fe.h>) ---- */

typedef struct pg_conn PGconn;

/* Keep the server's NOTICEs ("already exists, skipping", "no transaction in
 * progress") off stderr: libpq prints them by default, and neither library
 * code nor a tool's output should carry them. Errors still come back
 * through results. */
void saga__pq_quiet(PGconn *db);

/* JSON text PostgreSQL printed (a jsonb or json value) as a jansson value
 * (new reference; NULL with err when it is not JSON). PostgreSQL prints a
 * number such as 1e300 with all its digits, an integer literal too big
 * for jansson, which refuses the whole text: such a literal is read as
 * the real number it is, so that a value that went in comes out. */
json_t *saga__json_from_pg(const char *text, size_t flags, json_error_t *err);

#endif
