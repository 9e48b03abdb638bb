/* saga_engine_topics.c - the topics of a service first met after sagad
 * started (its definition deployed later): its reply and dead-letter
 * topics are created and the reply subscription renewed before its first
 * command leaves, so that its first answers are not left unread until the
 * consumer's next metadata refresh (10 s: longer than many a step's
 * timeout). */
#include "saga_engine_state.h"

static int known(const saga_engine *e, const char *service)
{
    for (int i = 0; i < e->nservices; i++)
        if (strcmp(e->services[i], service) == 0)
            return 1;
    return 0;
}

int saga__engine_know_service(saga_engine *e, const char *service)
{
    char *copy;
    if (known(e, service))
        return 0;
    if (saga__grow(&e->services, &e->capservices, e->nservices + 1, sizeof *e->services,
                   16) != SAGA_OK ||
        (copy = strdup(service)) == NULL)
        return -1;
    e->services[e->nservices++] = copy;
    return 0;
}

void saga__engine_meet_service(saga_engine *e, const char *service)
{
    char reply[300], dead[300];
    const char *topics[2] = {reply, dead};
    saga_error err = {0};
    rd_kafka_topic_partition_list_t *sub;
    if (service == NULL || known(e, service) ||
        saga__engine_know_service(e, service) != 0)
        return;
    saga__topic_reply_service(reply, sizeof reply, e->prefix, service);
    snprintf(dead, sizeof dead, "%sdead.%s", e->prefix, service);
    if (saga__kafka_ensure_topics(e->producer, topics, 2, 4, 10000, &err) != SAGA_OK)
        saga_log(SAGA_LOG_WARN,
                 "service %s (new since the start): %s; its replies are read once the "
                 "topic exists",
                 service, err.message);
    if (e->consumer == NULL || e->reply_pattern[0] == '\0')
        return;
    /* The pattern, and each service's reply topic by name: a topic named
     * in a subscription is looked up again at once until it is there
     * (topic.metadata.refresh.fast.interval.ms), where a pattern only
     * matches what the next full refresh shows (a topic just created may
     * not have its leader in the first answer). */
    sub = rd_kafka_topic_partition_list_new(e->nservices + 1);
    rd_kafka_topic_partition_list_add(sub, e->reply_pattern, RD_KAFKA_PARTITION_UA);
    for (int i = 0; i < e->nservices; i++) {
        char t[300];
        saga__topic_reply_service(t, sizeof t, e->prefix, e->services[i]);
        rd_kafka_topic_partition_list_add(sub, t, RD_KAFKA_PARTITION_UA);
    }
    if (rd_kafka_subscribe(e->consumer, sub) != RD_KAFKA_RESP_ERR_NO_ERROR)
        saga_log(SAGA_LOG_WARN, "renewing the reply subscription for service %s failed",
                 service);
    else
        saga_log(SAGA_LOG_INFO, "service %s (new since the start): reading %s", service,
                 reply);
    rd_kafka_topic_partition_list_destroy(sub);
}

void saga__engine_free_services(saga_engine *e)
{
    for (int i = 0; i < e->nservices; i++)
        free(e->services[i]);
    free(e->services);
    e->services = NULL;
    e->nservices = e->capservices = 0;
}
