/* Kafka helpers: topic names, configs, topic creation. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "saga_shared.h"

int saga__topic_cmd(char *buf, size_t size, const char *prefix, const char *service)
{
    return snprintf(buf, size, "%scmd.%s", prefix ? prefix : "saga.", service);
}

int saga__topic_reply(char *buf, size_t size, const char *prefix)
{
    return snprintf(buf, size, "%sreply", prefix ? prefix : "saga.");
}

int saga__topic_reply_service(char *buf, size_t size, const char *prefix,
                              const char *service)
{
    return snprintf(buf, size, "%sreply.%s", prefix ? prefix : "saga.", service);
}

/* A setting whose value is a secret (a password, a private key, a JAAS
 * line with one in it): never written into an error message, which ends
 * up in logs. */
static int secret_setting(const char *key)
{
    return strstr(key, "password") != NULL || strstr(key, "secret") != NULL ||
           strstr(key, "jaas") != NULL || strstr(key, "key.pem") != NULL ||
           strstr(key, "oauthbearer.config") != NULL;
}

long long saga__kafka_conf_int(const rd_kafka_conf_t *conf, const char *key,
                               long long dflt)
{
    char v[32];
    size_t len = sizeof v;
    return rd_kafka_conf_get(conf, key, v, &len) == RD_KAFKA_CONF_OK
               ? strtoll(v, NULL, 10)
               : dflt;
}

int saga__kafka_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                    saga_error *err)
{
    char errstr[256];
    if (rd_kafka_conf_set(conf, key, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK)
        return saga__error_set(err, SAGA_EKAFKA, "Kafka setting %s=%s: %s", key,
                               secret_setting(key) ? "(secret, not shown)" : value,
                               errstr);
    return SAGA_OK;
}

/* The file's settings: one key=value a line (the value runs from the first
 * non-blank after '=' to the end of the line, commas and all), blank lines
 * and '#' comments skipped. */
static int apply_options_file(rd_kafka_conf_t *conf, const char *path, saga_error *err)
{
    FILE *f = saga__open_secret(path, "Kafka options file ", err);
    char line[4096];
    int lineno = 0, rc = SAGA_OK;
    if (f == NULL)
        return SAGA_EIO;
    while (rc == SAGA_OK && fgets(line, sizeof line, f) != NULL) {
        size_t len = strlen(line);
        char *k = line, *eq, *end;
        lineno++;
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            rc = saga__error_set(err, SAGA_EINVAL,
                                 "Kafka options file %s:%d: line longer than %zu bytes",
                                 path, lineno, sizeof line - 2);
            break;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        while (isspace((unsigned char)*k))
            k++;
        if (*k == '\0' || *k == '#')
            continue;
        if ((eq = strchr(k, '=')) == NULL || eq == k) {
            rc = saga__error_set(err, SAGA_EINVAL,
                                 "Kafka options file %s:%d: not of the form key=value",
                                 path, lineno);
            break;
        }
        for (end = eq; end > k && isspace((unsigned char)end[-1]); end--)
            ;
        *end = '\0';
        /* As in a Java properties file: blanks after '=' are not the value's. */
        for (eq++; *eq == ' ' || *eq == '\t';)
            eq++;
        if (saga__kafka_set(conf, k, eq, err) != SAGA_OK) {
            char why[sizeof err->message];
            snprintf(why, sizeof why, "%s", err != NULL ? err->message : "");
            rc = saga__error_set(err, SAGA_EINVAL, "Kafka options file %s:%d: %s", path,
                                 lineno, why);
        }
    }
    /* The lines held secrets. */
    memset(line, 0, sizeof line);
    fclose(f);
    return rc;
}

int saga__kafka_apply_options(rd_kafka_conf_t *conf, const char *options,
                              const char *file, saga_error *err)
{
    const char *p = options;
    while (p != NULL && *p != '\0') {
        char item[512], *eq;
        size_t len = strcspn(p, ",");
        if (len >= sizeof item)
            return saga__error_set(err, SAGA_EINVAL, "Kafka option too long: %.40s...",
                                   p);
        memcpy(item, p, len);
        item[len] = '\0';
        p += len + (p[len] == ',');
        if (len == 0)
            continue;
        if ((eq = strchr(item, '=')) == NULL || eq == item)
            return saga__error_set(err, SAGA_EINVAL,
                                   "Kafka option \"%s\" is not of the form key=value",
                                   item);
        *eq = '\0';
        if (saga__kafka_set(conf, item, eq + 1, err) != SAGA_OK) {
            /* The caller's option is at fault, not Kafka: say so in err too. */
            if (err != NULL)
                err->code = SAGA_EINVAL;
            return SAGA_EINVAL;
        }
    }
    return file != NULL && *file != '\0' ? apply_options_file(conf, file, err) : SAGA_OK;
}

/* librdkafka logs to stderr by default; a library must not print. */
static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    (void)level;
    (void)fac;
    (void)buf;
}

rd_kafka_conf_t *saga__kafka_conf(const char *brokers, const char *client_id,
                                  saga_error *err)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (conf != NULL)
        rd_kafka_conf_set_log_cb(conf, quiet_log);
    if (conf == NULL) {
        saga__error_set(err, SAGA_ENOMEM, "out of memory");
        return NULL;
    }
    if (saga__kafka_set(conf, "bootstrap.servers", brokers, err) != SAGA_OK ||
        saga__kafka_set(conf, "client.id", client_id, err) != SAGA_OK ||
        /* Our own error path reports problems; keep librdkafka off stderr. */
        saga__kafka_set(conf, "log_level", "3", err) != SAGA_OK ||
        /* Small messages: latency over packet count. */
        saga__kafka_set(conf, "socket.nagle.disable", "true", err) != SAGA_OK) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

int saga__kafka_consumer_new(const char *brokers, const char *client_id,
                             const char *group_id, const char *instance_id,
                             const char *topic, const char *options,
                             const char *options_file,
                             void (*log_cb)(const rd_kafka_t *, int, const char *,
                                            const char *),
                             rd_kafka_t **out, saga_error *err)
{
    rd_kafka_conf_t *conf = saga__kafka_conf(brokers, client_id, err);
    rd_kafka_topic_partition_list_t *sub;
    rd_kafka_resp_err_t e;
    char errstr[512];
    int rc;

    *out = NULL;
    if (conf == NULL)
        return err ? err->code : SAGA_EKAFKA;
    if (log_cb != NULL)
        rd_kafka_conf_set_log_cb(conf, log_cb);
    /* Offsets are stored by hand once the batch's effects are durable, and
     * librdkafka commits what was stored every 200 ms. An OffsetCommit per
     * batch (hundreds a second) kept the broker's group coordinator so busy
     * that it left heartbeats unanswered: the session timed out, the
     * partitions were revoked, and replies stalled for seconds. After a
     * crash at most the last 200 ms are consumed again (duplicates, which
     * are absorbed). */
    if ((rc = saga__kafka_set(conf, "group.id", group_id, err)) != SAGA_OK ||
        (rc = saga__kafka_set(conf, "enable.auto.commit", "true", err)) != SAGA_OK ||
        (rc = saga__kafka_set(conf, "auto.commit.interval.ms", "200", err)) != SAGA_OK ||
        (rc = saga__kafka_set(conf, "enable.auto.offset.store", "false", err)) !=
            SAGA_OK ||
        (rc = saga__kafka_set(conf, "auto.offset.reset", "earliest", err)) != SAGA_OK ||
        /* A crashed member's partitions move on after 6 s (the broker's
         * minimum), not 45. */
        (rc = saga__kafka_set(conf, "session.timeout.ms", "6000", err)) != SAGA_OK ||
        (rc = saga__kafka_set(conf, "heartbeat.interval.ms", "2000", err)) != SAGA_OK ||
        /* The broker answers a fetch as soon as a reply is there; this only
         * bounds how long an empty fetch waits. */
        (rc = saga__kafka_set(conf, "fetch.wait.max.ms", "100", err)) != SAGA_OK ||
        (instance_id != NULL && *instance_id != '\0' &&
         (rc = saga__kafka_set(conf, "group.instance.id", instance_id, err)) !=
             SAGA_OK) ||
        (rc = saga__kafka_apply_options(conf, options, options_file, err)) != SAGA_OK) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    *out = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (*out == NULL) {
        rd_kafka_conf_destroy(conf);
        return saga__error_set(err, SAGA_EKAFKA, "creating a Kafka consumer: %s", errstr);
    }
    rd_kafka_poll_set_consumer(*out);
    sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
    e = rd_kafka_subscribe(*out, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_destroy(*out);
        *out = NULL;
        return saga__error_set(err, SAGA_EKAFKA, "subscribing to %s: %s", topic,
                               rd_kafka_err2str(e));
    }
    return SAGA_OK;
}

/* Do all n topics exist already? Then no CreateTopics is needed, which
 * matters where the client has no ACL to create topics (and for
 * librdkafka's mock cluster, which has no controller to ask). Any doubt
 * (metadata failing) answers no, and creation is attempted as before. */
static int topics_exist(rd_kafka_t *rk, const char *const *topics, int n, int timeout_ms)
{
    const struct rd_kafka_metadata *md = NULL;
    int found = 0;
    if (rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms < 5000 ? timeout_ms : 5000) !=
        RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    for (int i = 0; i < n; i++)
        for (int t = 0; t < md->topic_cnt; t++)
            if (strcmp(md->topics[t].topic, topics[i]) == 0 &&
                md->topics[t].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
                md->topics[t].partition_cnt > 0) {
                /* Served: every partition has its leader. */
                int led = 1;
                for (int p = 0; p < md->topics[t].partition_cnt; p++)
                    led &= md->topics[t].partitions[p].leader >= 0;
                found += led;
                break;
            }
    rd_kafka_metadata_destroy(md);
    return found == n;
}

int saga__kafka_ensure_topics(rd_kafka_t *rk, const char *const *topics, int n,
                              int partitions, int timeout_ms, saga_error *err)
{
    rd_kafka_NewTopic_t *nt[64];
    rd_kafka_queue_t *q;
    rd_kafka_AdminOptions_t *opts;
    rd_kafka_event_t *ev;
    const rd_kafka_CreateTopics_result_t *res;
    const rd_kafka_topic_result_t **tres;
    size_t ntres;
    char errstr[256];
    int rc = SAGA_OK;

    if (n <= 0)
        return SAGA_OK;
    if (n > 64)
        return saga__error_set(err, SAGA_EINVAL, "too many topics (%d) to create at once",
                               n);
    if (topics_exist(rk, topics, n, timeout_ms))
        return SAGA_OK;
    for (int i = 0; i < n; i++) {
        nt[i] = rd_kafka_NewTopic_new(topics[i], partitions, 1, errstr, sizeof errstr);
        if (nt[i] == NULL) {
            for (int j = 0; j < i; j++)
                rd_kafka_NewTopic_destroy(nt[j]);
            return saga__error_set(err, SAGA_EKAFKA, "topic %s: %s", topics[i], errstr);
        }
    }
    q = rd_kafka_queue_new(rk);
    opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, errstr, sizeof errstr);
    rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, errstr, sizeof errstr);
    rd_kafka_CreateTopics(rk, nt, (size_t)n, opts, q);
    ev = rd_kafka_queue_poll(q, timeout_ms + 2000);
    if (ev == NULL) {
        rc = saga__error_set(err, SAGA_EKAFKA,
                             "creating topics: no answer from the broker in %d ms",
                             timeout_ms);
    } else if (rd_kafka_event_error(ev)) {
        rc = saga__error_set(err, SAGA_EKAFKA, "creating topics: %s",
                             rd_kafka_event_error_string(ev));
    } else {
        res = rd_kafka_event_CreateTopics_result(ev);
        tres = rd_kafka_CreateTopics_result_topics(res, &ntres);
        for (size_t i = 0; i < ntres; i++) {
            rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tres[i]);
            if (e != RD_KAFKA_RESP_ERR_NO_ERROR &&
                e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                rc = saga__error_set(err, SAGA_EKAFKA, "creating topic %s: %s",
                                     rd_kafka_topic_result_name(tres[i]),
                                     rd_kafka_topic_result_error_string(tres[i]));
                break;
            }
        }
    }
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_queue_destroy(q);
    for (int i = 0; i < n; i++)
        rd_kafka_NewTopic_destroy(nt[i]);
    /* Created is not yet served: until the topics' leaders are in the
     * metadata, a consumer subscribing to them finds them "unknown" and
     * looks again only at its next refresh. Wait for them (bounded). */
    if (rc == SAGA_OK) {
        int64_t deadline = saga__mono_ms() + timeout_ms;
        struct timespec pause = {0, 100 * 1000000L};
        while (!topics_exist(rk, topics, n, 1000) && saga__mono_ms() < deadline)
            nanosleep(&pause, NULL);
    }
    return rc;
}

void saga__kafka_track(rd_kafka_topic_partition_list_t **list,
                       const rd_kafka_message_t *msg)
{
    rd_kafka_topic_partition_t *tp;
    const char *topic = rd_kafka_topic_name(msg->rkt);
    if (*list == NULL)
        *list = rd_kafka_topic_partition_list_new(8);
    tp = rd_kafka_topic_partition_list_find(*list, topic, msg->partition);
    if (tp == NULL)
        tp = rd_kafka_topic_partition_list_add(*list, topic, msg->partition);
    if (msg->offset + 1 > tp->offset)
        tp->offset = msg->offset + 1;
}

int saga__kafka_store_tracked(rd_kafka_t *consumer,
                              rd_kafka_topic_partition_list_t **list)
{
    rd_kafka_resp_err_t e;
    if (*list == NULL)
        return RD_KAFKA_RESP_ERR_NO_ERROR;
    e = rd_kafka_offsets_store(consumer, *list);
    /* A partition revoked meanwhile cannot be stored: fine, its new owner
     * re-reads it and the duplicates are absorbed. */
    if (e == RD_KAFKA_RESP_ERR__STATE)
        e = RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_topic_partition_list_destroy(*list);
    *list = NULL;
    return e;
}

void saga__kafka_rewind(rd_kafka_t *consumer)
{
    rd_kafka_topic_partition_list_t *parts = NULL;
    /* What was stored is durable: commit it now, so that the rewind only
     * repeats what was not. */
    rd_kafka_commit(consumer, NULL, 0);
    if (rd_kafka_assignment(consumer, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    if (rd_kafka_committed(consumer, parts, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < parts->cnt; i++)
            if (parts->elems[i].offset < 0)
                parts->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_error_t *ke = rd_kafka_seek_partitions(consumer, parts, 5000);
        if (ke != NULL)
            rd_kafka_error_destroy(ke);
    }
    rd_kafka_topic_partition_list_destroy(parts);
}
