/* saga_engine_trust.c - who may answer for a step: a reply is applied only
 * when it came on the reply topic of the step's service
 * (<prefix>reply.<service>; the shared <prefix>reply too with
 * shared_replies, during an upgrade) and, for a service with keys, carries
 * a valid signature. Also the service keys themselves (<key_dir>/<service>.key,
 * loaded once per service) and the signing of commands. */
#include <errno.h>
#include <sys/stat.h>

#include "saga/sign.h"
#include "saga_engine_state.h"

/* The keys of service (NULL: its messages are not signed); *broken when a
 * key file is there but cannot be used: its replies are then refused
 * (failing closed), and it was logged. */
static const saga_keys *service_keys(saga_engine *e, const char *service, int *broken)
{
    char path[1200];
    saga_error err = {0};
    service_key *sk;
    struct stat st;
    *broken = 0;
    for (int i = 0; i < e->nkeys; i++)
        if (strcmp(e->keys[i].service, service) == 0) {
            *broken = e->keys[i].broken;
            return e->keys[i].keys;
        }
    if (e->cfg.key_dir == NULL || *e->cfg.key_dir == '\0' ||
        saga__grow(&e->keys, &e->capkeys, e->nkeys + 1, sizeof *e->keys, 8) != SAGA_OK)
        return NULL;
    sk = &e->keys[e->nkeys++];
    memset(sk, 0, sizeof *sk);
    snprintf(sk->service, sizeof sk->service, "%s", service);
    snprintf(path, sizeof path, "%s/%s.key", e->cfg.key_dir, service);
    if (stat(path, &st) != 0 && errno == ENOENT) {
        saga_log(SAGA_LOG_INFO,
                 "service %s: no key file %s; its commands and replies are not signed",
                 service, path);
        return NULL;
    }
    if (saga_keys_load(path, &sk->keys, &err) != SAGA_OK) {
        sk->broken = 1;
        *broken = 1;
        saga_log(SAGA_LOG_ERROR,
                 "service %s: %s; its replies are refused until the file is fixed and "
                 "sagad restarted",
                 service, err.message);
        return NULL;
    }
    saga_log(SAGA_LOG_INFO,
             "service %s: commands signed, replies verified (%d key(s) in %s)", service,
             saga_keys_count(sk->keys), path);
    return sk->keys;
}

int saga__engine_load_keys(saga_engine *e, const char *service, saga_error *err)
{
    int broken;
    service_keys(e, service, &broken);
    if (broken)
        return saga__error_set(err, SAGA_EINVAL,
                               "service %s: its key file in %s cannot be used (see the "
                               "line above)",
                               service, e->cfg.key_dir);
    return SAGA_OK;
}

void saga__engine_free_keys(saga_engine *e)
{
    for (int i = 0; i < e->nkeys; i++)
        saga_keys_free(e->keys[i].keys);
    free(e->keys);
    e->keys = NULL;
    e->nkeys = e->capkeys = 0;
}

int saga__engine_sign(saga_engine *e, const char *service, const char *topic,
                      const char *key, const char *payload, char sig[SAGA_SIGNATURE_SIZE])
{
    const saga_keys *k;
    int broken;
    if (service == NULL || (k = service_keys(e, service, &broken)) == NULL)
        return 0;
    return saga_sign(k, topic, key, strlen(key), payload, strlen(payload), sig) ==
           SAGA_OK;
}

const char *saga__engine_distrust(saga_engine *e, const saga_state *s,
                                  const saga_reply *r, const rd_kafka_message_t *m,
                                  char *why, size_t size)
{
    const char *topic = rd_kafka_topic_name(m->rkt), *service;
    char own[300];
    const saga_keys *k;
    int broken;
    if (r->step < 0 || r->step >= s->def->nsteps)
        return NULL; /* the machine refuses an unknown step */
    service = s->def->steps[r->step].service;
    if (service == NULL) {
        /* A wait step: no command went out, so no service answers for it. */
        snprintf(why, size,
                 "a reply for step %d (%s) of saga %s, a wait step: it takes a signal, "
                 "never a reply",
                 r->step, s->def->steps[r->step].name, s->id);
        return "wrong_topic";
    }
    saga__topic_reply_service(own, sizeof own, e->prefix, service);
    if (strcmp(topic, own) != 0 &&
        !(e->cfg.shared_replies && strcmp(topic, e->reply_topic) == 0)) {
        snprintf(
            why, size,
            "a reply for step %d (%s) of saga %s came on %s, but that step's service "
            "%s answers on %s%s",
            r->step, s->def->steps[r->step].name, s->id, topic, service, own,
            strcmp(topic, e->reply_topic) == 0
                ? " (the shared reply topic is accepted only with --shared-replies, "
                  "during an upgrade)"
                : "");
        return "wrong_topic";
    }
    k = service_keys(e, service, &broken);
    if (k == NULL && !broken)
        return NULL;
    if (broken) {
        snprintf(why, size, "service %s's key file cannot be used: replies refused",
                 service);
        return "unauthenticated";
    }
    {
        rd_kafka_headers_t *hdrs = NULL;
        const void *sig = NULL;
        size_t siglen = 0;
        saga_error err = {0};
        /* A message fed by a test (saga__engine_feed_replies) has no
         * headers: it is unsigned. */
        if (e->feeding ||
            rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
            rd_kafka_header_get_last(hdrs, SAGA_SIGNATURE_HEADER, &sig, &siglen) !=
                RD_KAFKA_RESP_ERR_NO_ERROR)
            sig = NULL;
        if (saga_verify(k, topic, m->key, m->key_len, m->payload, m->len, sig, siglen,
                        &err) == SAGA_OK)
            return NULL;
        snprintf(why, size, "a reply for step %d (%s) of saga %s from service %s: %s",
                 r->step, s->def->steps[r->step].name, s->id, service, err.message);
    }
    return "unauthenticated";
}
