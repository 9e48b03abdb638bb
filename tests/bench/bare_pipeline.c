/* The bare pipeline: the PostgreSQL commits and Kafka round trips that a
 * saga step costs, with no saga logic, as a baseline for make bench.
 *
 * Per step, like sagad and a participant with libsaga's barrier: the driver
 * consumes a batch of replies, writes one row per reply in one transaction
 * (prepared statement, pipeline of one), produces the next commands; the
 * echo participant (a second thread) consumes a batch of commands, writes
 * one row per command in one transaction, produces the replies. Closed
 * loop: N "sagas" of K steps all start at once; prints sagas/s and steps/s
 * as one JSON line.
 *
 *   bare-pipeline --sagas N --steps K   (SAGA_PG_URL, SAGA_KAFKA_BROKERS) */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <libpq-fe.h>

static const char *brokers, *pg_url;
static char cmd_topic[128], reply_topic[128];
static volatile int stop;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bare-pipeline: %s: %s\n", what, why);
    exit(1);
}

static rd_kafka_t *producer(void)
{
    char e[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", brokers, e, sizeof e);
    rd_kafka_conf_set(c, "enable.idempotence", "true", e, sizeof e);
    rd_kafka_conf_set(c, "linger.ms", "1", e, sizeof e);
    rd_kafka_conf_set(c, "socket.nagle.disable", "true", e, sizeof e);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, e, sizeof e);
    if (rk == NULL)
        die("producer", e);
    return rk;
}

static rd_kafka_t *consumer(const char *topic, const char *group)
{
    char e[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_conf_set(c, "bootstrap.servers", brokers, e, sizeof e);
    rd_kafka_conf_set(c, "group.id", group, e, sizeof e);
    rd_kafka_conf_set(c, "auto.offset.reset", "earliest", e, sizeof e);
    rd_kafka_conf_set(c, "enable.auto.commit", "false", e, sizeof e);
    rd_kafka_conf_set(c, "socket.nagle.disable", "true", e, sizeof e);
    rd_kafka_conf_set(c, "allow.auto.create.topics", "true", e, sizeof e);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, e, sizeof e);
    if (rk == NULL)
        die("consumer", e);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    return rk;
}

static PGconn *connect_db(void)
{
    PGconn *db = PQconnectdb(pg_url);
    PGresult *r;
    if (PQstatus(db) != CONNECTION_OK)
        die("PostgreSQL", PQerrorMessage(db));
    PQclear(PQexec(db, "CREATE TABLE IF NOT EXISTS bare_step (saga int, step int,"
                       " who text, at timestamptz DEFAULT now())"));
    r = PQprepare(db, "ins",
                  "INSERT INTO bare_step (saga, step, who) VALUES ($1, $2, $3)", 3, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        die("prepare", PQerrorMessage(db));
    PQclear(r);
    return db;
}

/* Consume a batch from c, write a row per message in one transaction,
 * answer each with f(); returns the number consumed. */
static int round_trip(rd_kafka_t *c, rd_kafka_t *p, PGconn *db, const char *who,
                      const char *to, int steps, int *done)
{
    rd_kafka_message_t *msgs[500];
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(c);
    ssize_t n = rd_kafka_consume_batch_queue(q, 100, msgs, 500);
    int got = 0;
    rd_kafka_queue_destroy(q);
    if (n <= 0)
        return 0;
    PQclear(PQexec(db, "BEGIN"));
    for (ssize_t i = 0; i < n; i++) {
        int saga, step;
        char sb[16], tb[16];
        const char *pv[3] = {sb, tb, who};
        if (msgs[i]->err || msgs[i]->len >= 64 ||
            sscanf((const char *)msgs[i]->payload, "%d %d", &saga, &step) != 2)
            continue;
        snprintf(sb, sizeof sb, "%d", saga);
        snprintf(tb, sizeof tb, "%d", step);
        PQclear(PQexecPrepared(db, "ins", 3, pv, NULL, NULL, 0));
        got++;
    }
    PQclear(PQexec(db, "COMMIT"));
    for (ssize_t i = 0; i < n; i++) {
        int saga, step;
        char out[64];
        if (!msgs[i]->err && msgs[i]->len < 64 &&
            sscanf((const char *)msgs[i]->payload, "%d %d", &saga, &step) == 2) {
            /* The driver sends the next step; the echo answers this one. */
            if (done != NULL && step + 1 >= steps) {
                (*done)++;
            } else {
                int len = snprintf(out, sizeof out, "%d %d", saga,
                                   done != NULL ? step + 1 : step);
                rd_kafka_producev(
                    p, RD_KAFKA_V_TOPIC(to), RD_KAFKA_V_VALUE(out, (size_t)len),
                    RD_KAFKA_V_KEY(out, strcspn(out, " ")),
                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            }
        }
        rd_kafka_message_destroy(msgs[i]);
    }
    rd_kafka_poll(p, 0);
    rd_kafka_commit(c, NULL, 1);
    return got;
}

static void *echo(void *arg)
{
    rd_kafka_t *c = consumer(cmd_topic, (const char *)arg), *p = producer();
    PGconn *db = connect_db();
    while (!stop)
        round_trip(c, p, db, "participant", reply_topic, 0, NULL);
    rd_kafka_flush(p, 5000);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    rd_kafka_destroy(p);
    PQfinish(db);
    return NULL;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"sagas", required_argument, 0, 'n'},
                                         {"steps", required_argument, 0, 'k'},
                                         {0, 0, 0, 0}};
    int sagas = 1000, steps = 4, c, done = 0;
    char group[64];
    pthread_t t;
    rd_kafka_t *rc, *p;
    PGconn *db;
    int64_t t0, t1;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'n')
            sagas = atoi(optarg);
        else if (c == 'k')
            steps = atoi(optarg);
        else
            return 2;
    }
    brokers = getenv("SAGA_KAFKA_BROKERS");
    pg_url = getenv("SAGA_PG_URL");
    if (brokers == NULL || pg_url == NULL || sagas < 1 || steps < 1)
        die("usage", "SAGA_PG_URL and SAGA_KAFKA_BROKERS, --sagas N --steps K");
    snprintf(cmd_topic, sizeof cmd_topic, "bare%d.cmd", (int)getpid());
    snprintf(reply_topic, sizeof reply_topic, "bare%d.reply", (int)getpid());
    snprintf(group, sizeof group, "bare%d", (int)getpid());
    db = connect_db();
    rc = consumer(reply_topic, group);
    p = producer();
    pthread_create(&t, NULL, echo, group);
    /* Let both consumers join before the clock starts: a first message to
     * each topic creates it. */
    rd_kafka_producev(p, RD_KAFKA_V_TOPIC(cmd_topic), RD_KAFKA_V_VALUE("x", 1),
                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    rd_kafka_producev(p, RD_KAFKA_V_TOPIC(reply_topic), RD_KAFKA_V_VALUE("x", 1),
                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    rd_kafka_flush(p, 10000);
    sleep(6);
    t0 = mono_ms();
    PQclear(PQexec(db, "BEGIN"));
    for (int i = 0; i < sagas; i++) {
        char out[64], sb[16];
        const char *pv[3] = {sb, "0", "driver"};
        int len = snprintf(out, sizeof out, "%d 0", i);
        snprintf(sb, sizeof sb, "%d", i);
        PQclear(PQexecPrepared(db, "ins", 3, pv, NULL, NULL, 0));
        PQclear(PQexec(db, i % 100 == 99 ? "COMMIT; BEGIN" : "SELECT 1"));
        while (rd_kafka_producev(p, RD_KAFKA_V_TOPIC(cmd_topic),
                                 RD_KAFKA_V_VALUE(out, (size_t)len),
                                 RD_KAFKA_V_KEY(out, strcspn(out, " ")),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(p, 10);
    }
    PQclear(PQexec(db, "COMMIT"));
    while (done < sagas && mono_ms() - t0 < 600000)
        round_trip(rc, p, db, "driver", cmd_topic, steps, &done);
    t1 = mono_ms();
    stop = 1;
    pthread_join(t, NULL);
    printf("{\"label\":\"bare-%d\",\"sagas\":%d,\"ended\":%d,\"seconds\":%.3f,"
           "\"sagas_per_s\":%.1f,\"steps_per_s\":%.1f}\n",
           steps, sagas, done, (double)(t1 - t0) / 1000.0,
           done * 1000.0 / (double)(t1 - t0),
           done * (double)steps * 1000.0 / (double)(t1 - t0));
    rd_kafka_flush(p, 5000);
    rd_kafka_consumer_close(rc);
    rd_kafka_destroy(rc);
    rd_kafka_destroy(p);
    PQfinish(db);
    return done == sagas ? 0 : 1;
}
