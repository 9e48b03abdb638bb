/* The bare pipeline: the PostgreSQL commits and Kafka round trips that a
 * saga step costs, with no saga logic, as a baseline for make bench.
 *
 * Per step:
 *  - the driver (sagad's part) consumes a batch of replies and, in one
 *    transaction, inserts one row per reply (the transition) and one
 *    outbox row per next command, commits, produces the commands, commits
 *    the reply offsets; once Kafka confirms commands it deletes their
 *    outbox rows in one statement (its own transaction), as sagad does;
 *  - the echo participant (a second thread, its own consumer group, as a
 *    libsaga service has) consumes a batch of commands and, in one
 *    transaction, runs each inside a savepoint that inserts one barrier
 *    row, commits, produces the replies, commits the offsets.
 * What it leaves out is what sagad's durability and inspection add: the
 * saga and step rows' updates, the history rows, loading the sagas.
 * Closed loop: N "sagas" of K steps kept in flight for S seconds; prints
 * sagas/s and steps/s over those seconds as one JSON line.
 *
 *   bare-pipeline --sagas N --steps K --seconds S
 *   (SAGA_PG_URL, SAGA_KAFKA_BROKERS) */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdint.h>
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

/* The driver's state: outbox ids Kafka confirmed and not yet deleted. */
static int64_t *confirmed;
static size_t nconfirmed, capconfirmed;
static int64_t next_outbox_id = 1;

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

static void must(PGconn *db, PGresult *r, ExecStatusType want, const char *what)
{
    if (PQresultStatus(r) != want)
        die(what, PQerrorMessage(db));
    PQclear(r);
}

/* Delivery report: a confirmed command's outbox row can go (the driver's
 * producer only; the echo's replies carry no outbox id). */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err || m->_private == NULL)
        return;
    if (nconfirmed == capconfirmed) {
        capconfirmed = capconfirmed ? capconfirmed * 2 : 1024;
        confirmed = realloc(confirmed, capconfirmed * sizeof *confirmed);
        if (confirmed == NULL)
            die("delivery", "out of memory");
    }
    confirmed[nconfirmed++] = (int64_t)(intptr_t)m->_private;
}

static rd_kafka_t *producer(int with_reports)
{
    char e[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", brokers, e, sizeof e);
    rd_kafka_conf_set(c, "enable.idempotence", "true", e, sizeof e);
    rd_kafka_conf_set(c, "linger.ms", "1", e, sizeof e);
    rd_kafka_conf_set(c, "socket.nagle.disable", "true", e, sizeof e);
    if (with_reports)
        rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
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
    rd_kafka_conf_set(c, "fetch.wait.max.ms", "100", e, sizeof e);
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
    if (PQstatus(db) != CONNECTION_OK)
        die("PostgreSQL", PQerrorMessage(db));
    must(db,
         PQexec(db, "SET client_min_messages = warning;"
                    " CREATE TABLE IF NOT EXISTS bare_step (saga int, step int,"
                    " who text, at timestamptz DEFAULT now());"
                    " CREATE TABLE IF NOT EXISTS bare_outbox (id bigint PRIMARY KEY,"
                    " saga int, step int);"
                    " CREATE TABLE IF NOT EXISTS bare_barrier (saga int, step int,"
                    " at timestamptz DEFAULT now(), PRIMARY KEY (saga, step))"),
         PGRES_COMMAND_OK, "creating tables");
    must(db,
         PQprepare(db, "step",
                   "INSERT INTO bare_step (saga, step, who) VALUES ($1, $2, $3)", 3,
                   NULL),
         PGRES_COMMAND_OK, "prepare");
    must(db,
         PQprepare(db, "outbox",
                   "INSERT INTO bare_outbox (id, saga, step) VALUES ($1, $2, $3)", 3,
                   NULL),
         PGRES_COMMAND_OK, "prepare");
    must(db,
         PQprepare(db, "barrier",
                   "INSERT INTO bare_barrier (saga, step) VALUES ($1, $2)"
                   " ON CONFLICT DO NOTHING",
                   2, NULL),
         PGRES_COMMAND_OK, "prepare");
    must(db,
         PQprepare(db, "forget", "DELETE FROM bare_outbox WHERE id = ANY($1::bigint[])",
                   1, NULL),
         PGRES_COMMAND_OK, "prepare");
    return db;
}

static void exec_prepared(PGconn *db, const char *stmt, int n, const char *const *pv)
{
    must(db, PQexecPrepared(db, stmt, n, pv, NULL, NULL, 0), PGRES_COMMAND_OK, stmt);
}

/* The driver's command for (saga, step): its outbox row in the open
 * transaction; produced by send_command after the COMMIT. */
static int64_t record_command(PGconn *db, int saga, int step)
{
    char ib[24], sb[16], tb[16];
    const char *pv[3] = {ib, sb, tb};
    int64_t id = next_outbox_id++;
    snprintf(ib, sizeof ib, "%lld", (long long)id);
    snprintf(sb, sizeof sb, "%d", saga);
    snprintf(tb, sizeof tb, "%d", step);
    exec_prepared(db, "outbox", 3, pv);
    return id;
}

static void send_msg(rd_kafka_t *p, const char *topic, int saga, int step,
                     int64_t outbox_id)
{
    char out[64];
    int len = snprintf(out, sizeof out, "%d %d", saga, step);
    while (rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic),
                             RD_KAFKA_V_VALUE(out, (size_t)len),
                             RD_KAFKA_V_KEY(out, strcspn(out, " ")),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_OPAQUE((void *)(intptr_t)outbox_id),
                             RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(p, 10);
}

/* Delete the outbox rows of the commands Kafka confirmed, in one statement. */
static void forget_confirmed(PGconn *db)
{
    char *list;
    size_t len = 0;
    if (nconfirmed == 0)
        return;
    list = malloc(nconfirmed * 21 + 3);
    if (list == NULL)
        die("forget", "out of memory");
    list[len++] = '{';
    for (size_t i = 0; i < nconfirmed; i++)
        len +=
            (size_t)sprintf(list + len, "%s%lld", i ? "," : "", (long long)confirmed[i]);
    list[len++] = '}';
    list[len] = '\0';
    {
        const char *pv[1] = {list};
        must(db, PQexecPrepared(db, "forget", 1, pv, NULL, NULL, 0), PGRES_COMMAND_OK,
             "forget");
    }
    free(list);
    nconfirmed = 0;
}

typedef struct parsed {
    int saga, step;
} parsed;

/* A batch of messages from c, parsed; returns how many (0 when none came
 * within 100 ms). Like sagad, it wakes on the first message and takes what
 * else has arrived without waiting for a full batch. msgs are destroyed by
 * the caller. */
static int take(rd_kafka_t *c, rd_kafka_message_t **msgs, parsed *out, int *nmsgs)
{
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(c);
    rd_kafka_message_t *first = rd_kafka_consume_queue(q, 100);
    ssize_t n = 0;
    int got = 0;
    if (first != NULL) {
        msgs[0] = first;
        n = rd_kafka_consume_batch_queue(q, 0, msgs + 1, 499);
        n = 1 + (n > 0 ? n : 0);
    }
    rd_kafka_queue_destroy(q);
    *nmsgs = (int)n;
    for (int i = 0; i < *nmsgs; i++) {
        char buf[64];
        if (msgs[i]->err || msgs[i]->len >= sizeof buf)
            continue;
        memcpy(buf, msgs[i]->payload, msgs[i]->len);
        buf[msgs[i]->len] = '\0';
        if (sscanf(buf, "%d %d", &out[got].saga, &out[got].step) == 2)
            got++;
    }
    return got;
}

static void release(rd_kafka_t *c, rd_kafka_message_t **msgs, int n)
{
    for (int i = 0; i < n; i++)
        rd_kafka_message_destroy(msgs[i]);
    if (n > 0)
        rd_kafka_commit(c, NULL, 0);
}

static void *echo(void *arg)
{
    rd_kafka_t *c = consumer(cmd_topic, (const char *)arg), *p = producer(0);
    PGconn *db = connect_db();
    rd_kafka_message_t *msgs[500];
    parsed cmds[500];
    while (!stop) {
        int nmsgs, n = take(c, msgs, cmds, &nmsgs);
        if (n > 0) {
            must(db, PQexec(db, "BEGIN"), PGRES_COMMAND_OK, "BEGIN");
            for (int i = 0; i < n; i++) {
                char sb[16], tb[16];
                const char *pv[2] = {sb, tb};
                snprintf(sb, sizeof sb, "%d", cmds[i].saga);
                snprintf(tb, sizeof tb, "%d", cmds[i].step);
                must(db, PQexec(db, "SAVEPOINT cmd"), PGRES_COMMAND_OK, "SAVEPOINT");
                exec_prepared(db, "barrier", 2, pv);
                must(db, PQexec(db, "RELEASE SAVEPOINT cmd"), PGRES_COMMAND_OK,
                     "RELEASE");
            }
            must(db, PQexec(db, "COMMIT"), PGRES_COMMAND_OK, "COMMIT");
            for (int i = 0; i < n; i++)
                send_msg(p, reply_topic, cmds[i].saga, cmds[i].step, 0);
        }
        rd_kafka_poll(p, 0);
        release(c, msgs, nmsgs);
    }
    rd_kafka_flush(p, 5000);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    rd_kafka_destroy(p);
    PQfinish(db);
    return NULL;
}

static int whole(const char *name, const char *text, int lo, int hi)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "bare-pipeline: --%s %s: expected a whole number from %d to %d\n",
                name, text, lo, hi);
        exit(2);
    }
    return (int)v;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"sagas", required_argument, 0, 'n'},
                                         {"steps", required_argument, 0, 'k'},
                                         {"seconds", required_argument, 0, 's'},
                                         {0, 0, 0, 0}};
    int sagas = 1000, steps = 4, seconds = 10, c, started = 0, done = 0,
        done_in_window = 0;
    long long steps_in_window = 0;
    char driver_group[64], echo_group[64];
    pthread_t t;
    rd_kafka_t *rc, *p;
    PGconn *db;
    int64_t t0, deadline, t1;
    rd_kafka_message_t *msgs[500];
    parsed replies[500];

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'n')
            sagas = whole("sagas", optarg, 1, 1000000);
        else if (c == 'k')
            steps = whole("steps", optarg, 1, 100);
        else if (c == 's')
            seconds = whole("seconds", optarg, 1, 3600);
        else
            die("usage", "--sagas N --steps K --seconds S");
    }
    brokers = getenv("SAGA_KAFKA_BROKERS");
    pg_url = getenv("SAGA_PG_URL");
    if (brokers == NULL || pg_url == NULL)
        die("usage", "SAGA_PG_URL and SAGA_KAFKA_BROKERS must be set");
    snprintf(cmd_topic, sizeof cmd_topic, "bare%d.cmd", (int)getpid());
    snprintf(reply_topic, sizeof reply_topic, "bare%d.reply", (int)getpid());
    /* Two groups, as sagad and a service have: one group for both would
     * make each consumer's join rebalance, and stall, the other. */
    snprintf(driver_group, sizeof driver_group, "bare%d.driver", (int)getpid());
    snprintf(echo_group, sizeof echo_group, "bare%d.echo", (int)getpid());
    db = connect_db();
    rc = consumer(reply_topic, driver_group);
    p = producer(1);
    if (pthread_create(&t, NULL, echo, echo_group) != 0)
        die("thread", "cannot start the echo participant");
    /* Let both consumers join before the clock starts: a first message to
     * each topic creates it. */
    send_msg(p, cmd_topic, -1, 0, 0);
    send_msg(p, reply_topic, -1, 0, 0);
    rd_kafka_flush(p, 10000);
    sleep(6);
    t0 = mono_ms();
    deadline = t0 + (int64_t)seconds * 1000;
    /* The first N sagas: step 0 of each, 100 per transaction. */
    for (int i = 0; i < sagas; i += 100) {
        int64_t first = next_outbox_id;
        int k = sagas - i < 100 ? sagas - i : 100;
        must(db, PQexec(db, "BEGIN"), PGRES_COMMAND_OK, "BEGIN");
        for (int j = i; j < i + k; j++) {
            char sb[16];
            const char *pv[3] = {sb, "-1", "driver"};
            snprintf(sb, sizeof sb, "%d", j);
            exec_prepared(db, "step", 3, pv);
            record_command(db, j, 0);
        }
        must(db, PQexec(db, "COMMIT"), PGRES_COMMAND_OK, "COMMIT");
        for (int j = i; j < i + k; j++)
            send_msg(p, cmd_topic, j, 0, first + (j - i));
    }
    started = sagas;
    /* Then replies: the next step, or (until the deadline) a new saga in
     * the place of one that ended. */
    while (done < started && mono_ms() - t0 < (int64_t)seconds * 1000 + 600000) {
        int nmsgs, n = take(rc, msgs, replies, &nmsgs), next_saga[500], next_step[500];
        int64_t ids[500], now = mono_ms();
        int nnext = 0;
        if (n > 0) {
            must(db, PQexec(db, "BEGIN"), PGRES_COMMAND_OK, "BEGIN");
            for (int i = 0; i < n; i++) {
                char sb[16], tb[16];
                const char *pv[3] = {sb, tb, "driver"};
                int saga = replies[i].saga, step = replies[i].step + 1;
                if (saga < 0)
                    continue;
                snprintf(sb, sizeof sb, "%d", saga);
                snprintf(tb, sizeof tb, "%d", replies[i].step);
                exec_prepared(db, "step", 3, pv);
                if (now < deadline)
                    steps_in_window++;
                if (step >= steps) {
                    done++;
                    if (now >= deadline)
                        continue;
                    done_in_window++;
                    saga = started++;
                    step = 0;
                }
                next_saga[nnext] = saga;
                next_step[nnext] = step;
                ids[nnext++] = record_command(db, saga, step);
            }
            must(db, PQexec(db, "COMMIT"), PGRES_COMMAND_OK, "COMMIT");
            for (int i = 0; i < nnext; i++)
                send_msg(p, cmd_topic, next_saga[i], next_step[i], ids[i]);
        }
        rd_kafka_poll(p, 0);
        release(rc, msgs, nmsgs);
        forget_confirmed(db);
    }
    t1 = mono_ms();
    stop = 1;
    pthread_join(t, NULL);
    rd_kafka_flush(p, 5000);
    rd_kafka_poll(p, 0);
    forget_confirmed(db);
    printf("{\"label\":\"bare-%d\",\"in_flight\":%d,\"started\":%d,\"ended\":%d,"
           "\"seconds\":%.3f,\"load_seconds\":%d,\"sagas_per_s\":%.1f,\"steps_per_s\":%."
           "1f}\n",
           steps, sagas, started, done, (double)(t1 - t0) / 1000.0, seconds,
           done_in_window / (double)seconds, (double)steps_in_window / (double)seconds);
    rd_kafka_consumer_close(rc);
    rd_kafka_destroy(rc);
    rd_kafka_destroy(p);
    PQfinish(db);
    free(confirmed);
    if (done != started) {
        fprintf(stderr, "bare-pipeline: %d sagas started, %d ended\n", started, done);
        return 1;
    }
    return 0;
}
