/* Resilience toward participants, against a real PostgreSQL and Kafka:
 * the circuit breaker holds commands to a service that keeps failing
 * (steps wait, they do not fail) and lets them go once it is back; the
 * bulkhead caps the commands out to a slow service while a fast one runs
 * freely. Both are watched through sagad's /metrics and `sagactl stats`.
 * A service that never answers times its steps out until the saga fails;
 * duplicate, malformed and stray replies are counted, not logged per
 * message: sagad's log at info stays a few lines long. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>

#include "harness.h"
#include "saga/saga.h"

#define SLOW_MS  300
#define NSLOW    8
#define NFAST    8
#define NFLAKY   5
#define MAXCMDS  512
#define SLOW_CAP 2

static it_proc sagad;
static int http_port;
static char defs_dir[] = "/tmp/saga-resilience-XXXXXX";

typedef struct svc {
    const char *name;
    saga_participant *p;
    pthread_t thread;
    pthread_mutex_t lock;
    int down;     /* flaky: answer `retry` */
    int received; /* commands handled */
    /* slow: when each command was dispatched (from its deadline) and answered */
    int64_t sent_at[MAXCMDS], done_at[MAXCMDS];
    int64_t last_done;
} svc;

static svc flaky = {.name = "flaky"}, slow = {.name = "slow"}, fast = {.name = "fast"};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void handle(const saga_command *cmd, PGconn *db, saga_result *res, void *arg)
{
    svc *s = arg;
    int down, k;
    (void)db;
    pthread_mutex_lock(&s->lock);
    k = s->received++;
    down = s->down;
    pthread_mutex_unlock(&s->lock);
    if (s == &slow)
        usleep(SLOW_MS * 1000);
    pthread_mutex_lock(&s->lock);
    if (k < MAXCMDS) {
        /* Every step here has a 10 s timeout: deadline - 10 s is when sagad
         * committed the dispatch. */
        s->sent_at[k] = cmd->deadline - 10000;
        s->done_at[k] = now_ms();
    }
    s->last_done = now_ms();
    pthread_mutex_unlock(&s->lock);
    if (down)
        saga_result_retry(res, 0, "%s is down", s->name);
    else
        saga_result_ok(res, json_pack("{s:s}", "by", s->name));
}

static void *run(void *arg)
{
    svc *s = arg;
    saga_error err = {0};
    if (saga_participant_run(s->p, &err) != SAGA_OK)
        fprintf(stderr, "participant %s: %s\n", s->name, err.message);
    return NULL;
}

static void start_service(svc *s)
{
    saga_participant_options o = {0};
    saga_error err = {0};
    pthread_mutex_init(&s->lock, NULL);
    o.brokers = it_env("SAGA_KAFKA_BROKERS");
    o.service = s->name;
    o.topic_prefix = getenv("SAGA_TOPIC_PREFIX");
    if (saga_participant_new(&o, &s->p, &err) != SAGA_OK)
        fail_msg("participant %s: %s", s->name, err.message);
    assert_int_equal(saga_participant_on(s->p, SAGA_PHASE_INVOKE, "work", handle, s), 0);
    assert_int_equal(saga_participant_on(s->p, SAGA_PHASE_COMPENSATE, "undo", handle, s),
                     0);
    assert_int_equal(pthread_create(&s->thread, NULL, run, s), 0);
}

static void stop_service(svc *s)
{
    saga_participant_stop(s->p);
    pthread_join(s->thread, NULL);
    saga_participant_free(s->p);
}

static void write_def(const char *name, const char *service)
{
    char path[512];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s.json", defs_dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    /* Many quick retries: without a breaker a failing service would be
     * hammered several times a second per saga. */
    fprintf(f,
            "{\"name\":\"%s\",\"defaults\":{\"timeout\":\"10s\",\"retry\":"
            "{\"max_attempts\":100,\"backoff\":\"100ms\",\"max_backoff\":\"200ms\"}},"
            "\"steps\":[{\"name\":\"only\",\"service\":\"%s\",\"action\":\"work\","
            "\"compensation\":\"undo\",\"input\":{\"n\":\"${input.n}\"}}]}\n",
            name, service);
    fclose(f);
}

/* "mute" has no participant at all: every attempt times out. Two attempts,
 * then one for the compensation, then the saga is failed. */
static void write_mute_def(void)
{
    char path[512];
    FILE *f;
    snprintf(path, sizeof path, "%s/mute_saga.json", defs_dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"name\":\"mute_saga\",\"defaults\":{\"timeout\":\"500ms\",\"retry\":"
               "{\"max_attempts\":2,\"backoff\":\"100ms\"},\"compensation_retry\":"
               "{\"max_attempts\":1}},"
               "\"steps\":[{\"name\":\"only\",\"service\":\"mute\",\"action\":\"work\","
               "\"compensation\":\"undo\"}]}\n");
    fclose(f);
}

/* GET path from sagad's HTTP endpoint; the body into buf. Returns the
 * HTTP status, or -1. */
static int http_get(const char *path, char *buf, size_t size)
{
    return it_http_get(http_port, path, buf, size);
}

/* The value of the sample `series` (name{labels}) in a scrape; -1 if absent. */
static char *scrape(void)
{
    static char buf[1 << 20];
    assert_int_equal(http_get("/metrics", buf, sizeof buf), 200);
    return buf;
}

static void start_sagas(const char *name, int n, char ids[][SAGA_ID_LEN + 1])
{
    saga_client *c = NULL;
    saga_error err = {0};
    /* Through the client: sagad turns the requests into sagas, so the first
     * commands pass the gate too. */
    if (saga_client_new(it_env("SAGA_PG_URL"), &c, &err) != SAGA_OK)
        fail_msg("client: %s", err.message);
    for (int i = 0; i < n; i++) {
        json_t *input = json_pack("{s:i}", "n", i);
        if (saga_client_start(c, name, input, NULL, ids[i], NULL, &err) != SAGA_OK)
            fail_msg("start %s: %s", name, err.message);
        json_decref(input);
    }
    saga_client_free(c);
}

static int setup(void **state)
{
    const char *migrate[] = {"migrate", "--dir", "migrations", NULL};
    char limits[64];
    (void)state;
    it_isolate_db("resilience");
    setenv("SAGA_TOPIC_PREFIX", it_prefix("resilience"), 1);
    if (mkdtemp(defs_dir) == NULL || it_sagactl(NULL, 0, migrate) != 0)
        return -1;
    write_def("flaky_saga", "flaky");
    write_def("slow_saga", "slow");
    write_def("fast_saga", "fast");
    write_mute_def();
    start_service(&flaky);
    start_service(&slow);
    start_service(&fast);
    snprintf(limits, sizeof limits, "slow=%d", SLOW_CAP);
    {
        const char *args[] = {"--definitions",
                              defs_dir,
                              "--http",
                              "127.0.0.1:0",
                              "--breaker-failures",
                              "3",
                              "--breaker-cooldown",
                              "1s",
                              "--service-limits",
                              limits,
                              "--observe-interval",
                              "300ms",
                              NULL};
        if (it_spawn(&sagad, "resilience-sagad", "sagad", args) != 0 ||
            it_wait_log(&sagad, "sagad running", 60000) != 0)
            return -1;
        http_port = it_http_port(&sagad);
    }
    return http_port > 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    it_stop(&sagad);
    stop_service(&flaky);
    stop_service(&slow);
    stop_service(&fast);
    return 0;
}

/* Lines of sagad's log that contain needle. */
static int log_lines(const char *needle)
{
    FILE *f = fopen(sagad.log, "r");
    char line[8192];
    int n = 0;
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        n += needle == NULL || strstr(line, needle) != NULL;
    if (f != NULL)
        fclose(f);
    return n;
}

/* Put messages on sagad's reply topic, as a participant would. */
static void produce_replies(const char *const *texts, int n)
{
    char errstr[512], topic[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    /* The fast service's reply topic: the duplicate is its reply. */
    snprintf(topic, sizeof topic, "%sreply.fast", getenv("SAGA_TOPIC_PREFIX"));
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers",
                                       it_env("SAGA_KAFKA_BROKERS"), errstr,
                                       sizeof errstr),
                     RD_KAFKA_CONF_OK);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    assert_non_null(rk);
    for (int i = 0; i < n; i++)
        assert_int_equal(
            rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                              RD_KAFKA_V_VALUE((void *)texts[i], strlen(texts[i])),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
            RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_flush(rk, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);
}

/* A reply encoded as a participant would send it; the caller frees it. */
static char *reply_text(const char *saga_id, int step, int attempt)
{
    saga_reply r = {0};
    saga_error err = {0};
    char cid[128], *text = NULL;
    r.v = SAGA_PROTOCOL_VERSION;
    snprintf(r.saga_id, sizeof r.saga_id, "%s", saga_id);
    r.step = step;
    r.phase = SAGA_PHASE_INVOKE;
    saga_command_id_format(cid, sizeof cid, saga_id, step, SAGA_PHASE_INVOKE);
    r.command_id = cid;
    r.attempt = attempt;
    r.status = SAGA_REPLY_OK;
    assert_int_equal(saga_reply_encode(&r, &text, NULL, &err), SAGA_OK);
    return text;
}

/* Wait until the sample reaches at least want (the engine counts on
 * commit); returns the last value seen. */
static double wait_sample(const char *series, double want)
{
    double v = -1;
    for (int i = 0; i < 100; i++) {
        v = it_sample(scrape(), series);
        if (v >= want)
            break;
        usleep(100 * 1000);
    }
    return v;
}

static void test_health_endpoints(void **state)
{
    char buf[4096];
    (void)state;
    assert_int_equal(http_get("/healthz", buf, sizeof buf), 200);
    /* Ready once the first look at the database and the broker is done. */
    for (int i = 0; i < 100 && http_get("/readyz", buf, sizeof buf) != 200; i++)
        usleep(100 * 1000);
    assert_int_equal(http_get("/readyz", buf, sizeof buf), 200);
    assert_int_equal(http_get("/nope", buf, sizeof buf), 404);
    /* Every definition's outcome series exists from the start, so that
     * increase() sees the first failure; every status has its gauge, from
     * sagad's first look at the database (which /readyz does not wait for:
     * connected is ready). */
    assert_true(wait_sample("saga_sagas{status=\"completed\"}", 0) == 0);
    {
        char *m = scrape();
        assert_true(
            it_sample(
                m, "saga_sagas_total{definition=\"mute_saga\",outcome=\"failed\"}") == 0);
        assert_true(
            it_sample(
                m, "saga_sagas_total{definition=\"flaky_saga\",outcome=\"completed\"}") ==
            0);
        assert_true(it_sample(m, "saga_sagas{status=\"running\"}") == 0);
        assert_true(it_sample(m, "saga_sagas{status=\"completed\"}") == 0);
        assert_true(it_sample(m, "saga_sagas{status=\"resolved\"}") == 0);
        assert_true(
            it_sample(m, "saga_oldest_unprogressing_seconds{status=\"running\"}") == 0);
    }
}

static void test_breaker_holds_a_failing_service_and_lets_it_recover(void **state)
{
    char ids[NFLAKY][SAGA_ID_LEN + 1], out[16384];
    PGconn *db = it_db();
    const char *stats[] = {"stats", NULL};
    int during, seen_open = 0;
    char *m;
    (void)state;
    flaky.down = 1;
    start_sagas("flaky_saga", NFLAKY, ids);
    /* 6 s down: five sagas retrying every 100-200 ms would send ~200
     * commands; the breaker lets 3 failures through, then a probe per
     * cool-down (1 s, 2 s, 4 s). */
    for (int i = 0; i < 60; i++) {
        usleep(100 * 1000);
        m = scrape();
        if (it_sample(m, "saga_breaker_state{service=\"flaky\",state=\"open\"}") == 1 ||
            it_sample(m, "saga_breaker_state{service=\"flaky\",state=\"half_open\"}") ==
                1)
            seen_open = 1;
    }
    pthread_mutex_lock(&flaky.lock);
    during = flaky.received;
    pthread_mutex_unlock(&flaky.lock);
    print_message("flaky service down 6 s: %d commands reached it\n", during);
    assert_true(seen_open);
    assert_true(during >= 3);
    assert_true(during <= 3 + NFLAKY + 6);
    m = scrape();
    assert_true(
        it_sample(m, "saga_commands_held_total{service=\"flaky\",reason=\"breaker\"}") >
        0);
    assert_true(it_sample(m, "saga_steps_retried_total{service=\"flaky\",action=\"work\","
                             "phase=\"invoke\"}") >= 1); /* a probe at least */
    assert_true(it_sample(m, "saga_commands_sent_total{service=\"flaky\"}") >= during);
    /* Retried and held for 6 s: no progress, and the gauge and
     * `sagactl stuck` say so (every hold and retry moved updated_at). */
    assert_true(it_sample(m, "saga_sagas{status=\"running\"}") == NFLAKY);
    assert_true(it_sample(m, "saga_oldest_unprogressing_seconds{status=\"running\"}") >
                4);
    {
        const char *stuck[] = {"stuck", "--older-than", "4s", NULL};
        assert_int_equal(it_sagactl_all(out, sizeof out, 0, stuck), 1);
        for (int i = 0; i < NFLAKY; i++)
            assert_non_null(strstr(out, ids[i]));
    }
    /* The history says why the saga waits. */
    {
        const char *hist[] = {"history", ids[0], NULL};
        assert_int_equal(it_sagactl_all(out, sizeof out, 0, hist), 0);
        assert_non_null(strstr(out, "step_held"));
        assert_non_null(strstr(out, "circuit breaker open"));
    }
    /* Steps wait: nothing failed, nothing compensates. */
    assert_int_equal(
        it_int(db, "SELECT count(*) FROM saga.saga WHERE status <> 'running'", 0, NULL),
        0);
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, stats), 0);
    assert_non_null(strstr(out, "flaky"));
    assert_true(strstr(out, "open") != NULL || strstr(out, "half_open") != NULL);
    /* Back up: the next probe succeeds, the breaker closes, all complete. */
    flaky.down = 0;
    for (int i = 0; i < NFLAKY; i++)
        assert_string_equal(it_wait_final(db, ids[i], 60000), "completed");
    usleep(800 * 1000); /* one observe interval and a bit */
    m = scrape();
    assert_true(it_sample(m, "saga_breaker_state{service=\"flaky\",state=\"closed\"}") ==
                1);
    assert_true(
        it_sample(m,
                  "saga_sagas_total{definition=\"flaky_saga\",outcome=\"completed\"}") ==
        NFLAKY);
    assert_true(it_sample(m, "saga_replies_total{service=\"flaky\",status=\"retry\"}") >=
                3);
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, stats), 0);
    assert_non_null(strstr(out, "closed"));
    /* Nothing runs now; the finished sagas are counted (less often). */
    assert_true(it_sample(m, "saga_oldest_unprogressing_seconds{status=\"running\"}") ==
                0);
    for (int i = 0; i < 100 && it_sample(m, "saga_sagas{status=\"completed\"}") != NFLAKY;
         i++) {
        usleep(100 * 1000);
        m = scrape();
    }
    assert_true(it_sample(m, "saga_sagas{status=\"completed\"}") == NFLAKY);
    /* The breaker's opening and closing were said once each, not per
     * command held. */
    assert_int_equal(log_lines("circuit breaker of service flaky closed"), 1);
    {
        int opened = log_lines("circuit breaker of service flaky opened");
        assert_true(opened >= 1 && opened <= 4); /* the first, then failed probes */
    }
    PQfinish(db);
}

static void test_bulkhead_caps_a_slow_service_not_a_fast_one(void **state)
{
    char slow_ids[NSLOW][SAGA_ID_LEN + 1], fast_ids[NFAST][SAGA_ID_LEN + 1];
    PGconn *db = it_db();
    int most = 0, n;
    int64_t fast_done = 0;
    char *m;
    (void)state;
    start_sagas("slow_saga", NSLOW, slow_ids);
    start_sagas("fast_saga", NFAST, fast_ids);
    /* sagad's own count of slow's commands in flight: never over the cap,
     * and seen at work (a missing series reads -1, which alone would pass
     * the first check). */
    {
        double seen = -1;
        for (int i = 0; i < 40; i++) {
            double v;
            usleep(100 * 1000);
            m = scrape();
            v = it_sample(m, "saga_commands_in_flight{service=\"slow\"}");
            assert_true(v <= SLOW_CAP);
            if (v > seen)
                seen = v;
        }
        assert_true(seen >= 1);
    }
    for (int i = 0; i < NFAST; i++)
        assert_string_equal(it_wait_final(db, fast_ids[i], 60000), "completed");
    pthread_mutex_lock(&fast.lock);
    fast_done = fast.last_done;
    pthread_mutex_unlock(&fast.lock);
    for (int i = 0; i < NSLOW; i++)
        assert_string_equal(it_wait_final(db, slow_ids[i], 60000), "completed");
    /* At each dispatch to the slow service, how many were out unanswered? */
    pthread_mutex_lock(&slow.lock);
    n = slow.received < MAXCMDS ? slow.received : MAXCMDS;
    for (int j = 0; j < n; j++) {
        int out = 0;
        for (int i = 0; i < n; i++)
            out +=
                slow.sent_at[i] <= slow.sent_at[j] && slow.done_at[i] > slow.sent_at[j];
        if (out > most)
            most = out;
    }
    pthread_mutex_unlock(&slow.lock);
    print_message("slow service: %d commands, at most %d out at once (cap %d); fast "
                  "sagas done %lld ms before the last slow one\n",
                  n, most, SLOW_CAP, (long long)(slow.last_done - fast_done));
    assert_int_equal(n, NSLOW);
    assert_true(most >= 1 && most <= SLOW_CAP);
    /* The fast service was never held, and finished long before the slow. */
    assert_true(fast_done < slow.last_done - SLOW_MS);
    m = scrape();
    assert_true(
        it_sample(m, "saga_commands_held_total{service=\"slow\",reason=\"bulkhead\"}") >
        0);
    assert_true(
        it_sample(m, "saga_commands_held_total{service=\"fast\",reason=\"bulkhead\"}") <
        0);
    assert_true(it_sample(m,
                          "saga_steps_dispatched_total{service=\"fast\",action=\"work\","
                          "phase=\"invoke\"}") == NFAST);
    PQfinish(db);
}

static void test_timeouts_dropped_replies_and_a_quiet_log(void **state)
{
    PGconn *db = it_db();
    char mute[1][SAGA_ID_LEN + 1], fast_id[1][SAGA_ID_LEN + 1], needle[128];
    const char *malformed[] = {"{not json"};
    char *dup, *strays[30];
    double before_dup, before_unknown;
    char *m;
    int lines;
    (void)state;
    /* No answer at all: two attempts time out, the compensation's too. */
    start_sagas("mute_saga", 1, mute);
    assert_string_equal(it_wait_final(db, mute[0], 60000), "failed");
    assert_true(
        wait_sample("saga_sagas_total{definition=\"mute_saga\",outcome=\"failed\"}", 1) ==
        1);
    m = scrape();
    assert_true(it_sample(m, "saga_step_timeouts_total{service=\"mute\",action=\"work\","
                             "phase=\"invoke\"}") == 2);
    assert_true(it_sample(m, "saga_step_timeouts_total{service=\"mute\",action=\"undo\","
                             "phase=\"compensate\"}") == 1);
    assert_true(it_sample(m, "saga_steps_retried_total{service=\"mute\",action=\"work\","
                             "phase=\"invoke\"}") == 1);
    assert_true(it_sample(m,
                          "saga_steps_dispatched_total{service=\"mute\",action=\"work\","
                          "phase=\"invoke\"}") == 2);
    assert_true(wait_sample("saga_sagas{status=\"failed\"}", 1) == 1);
    /* One warn line says so, with the saga's id as a field. */
    snprintf(needle, sizeof needle, "\"saga_id\":\"%s\"", mute[0]);
    assert_int_equal(log_lines("failed at step only"), 1);
    assert_int_equal(log_lines(needle), 1);

    /* A reply for a saga that has ended: a duplicate. */
    start_sagas("fast_saga", 1, fast_id);
    assert_string_equal(it_wait_final(db, fast_id[0], 60000), "completed");
    before_dup = it_sample(scrape(), "saga_replies_dropped_total{reason=\"duplicate\"}");
    dup = reply_text(fast_id[0], 0, 1);
    produce_replies((const char *const *)&dup, 1);
    free(dup);
    assert_true(wait_sample("saga_replies_dropped_total{reason=\"duplicate\"}",
                            (before_dup < 0 ? 0 : before_dup) + 1) ==
                (before_dup < 0 ? 0 : before_dup) + 1);
    /* Not a reply at all. */
    produce_replies(malformed, 1);
    assert_true(wait_sample("saga_replies_dropped_total{reason=\"malformed\"}", 1) == 1);
    /* Thirty replies for sagas nobody knows: counted each, a line or two. */
    before_unknown =
        it_sample(scrape(), "saga_replies_dropped_total{reason=\"unknown_saga\"}");
    if (before_unknown < 0)
        before_unknown = 0;
    for (int i = 0; i < 30; i++) {
        char id[SAGA_ID_LEN + 1];
        snprintf(id, sizeof id, "00000000-0000-4000-8000-%012d", i);
        strays[i] = reply_text(id, 0, 1);
    }
    produce_replies((const char *const *)strays, 30);
    for (int i = 0; i < 30; i++)
        free(strays[i]);
    assert_true(wait_sample("saga_replies_dropped_total{reason=\"unknown_saga\"}",
                            before_unknown + 30) == before_unknown + 30);
    assert_true(log_lines("reply for unknown saga") <= 2);
    /* All of it, and the 20 sagas of the tests before, at info: a short log
     * (start-up, the breaker, the failed saga, the warnings above). */
    lines = log_lines(NULL);
    print_message("sagad.log at info after %d sagas and 32 stray replies: %d lines\n",
                  NFLAKY + NSLOW + NFAST + 2, lines);
    assert_true(lines < 40);
    PQfinish(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_endpoints),
        cmocka_unit_test(test_breaker_holds_a_failing_service_and_lets_it_recover),
        cmocka_unit_test(test_bulkhead_caps_a_slow_service_not_a_fast_one),
        cmocka_unit_test(test_timeouts_dropped_replies_and_a_quiet_log),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
