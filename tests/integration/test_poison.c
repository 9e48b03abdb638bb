/* One bad message or row must not stall, loop or corrupt anything in sagad
 * (issue 11, DESIGN rule 9), against a real broker and database:
 *  - a spec-valid-looking reply with retry_after 10^16 among good replies
 *    on one partition: the good ones apply within seconds, the bad one is
 *    a dead letter with its reason, the batch is not rolled back in a loop;
 *  - a reply whose transaction PostgreSQL refuses (a test trigger) is
 *    isolated from its batch and set aside after 3 tries alone, and
 *    `sagactl dead replay` applies it once the cause is gone;
 *  - a saga whose timer fails its transaction, and a start request that
 *    cannot be inserted, are set aside while the others go on;
 *  - a command made too large for Kafka by a step's output fails its step
 *    with message_too_large (sent once, never resent), the saga
 *    compensates, the service's breaker stays closed and a small saga to
 *    the same service completes;
 *  - a PostgreSQL restart under load costs a few log lines, not a storm.
 * No participant runs: the test answers the commands itself. */
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

static it_proc sagad;
static PGconn *db;
static char *prefix;
static char defs_dir[512];
static rd_kafka_t *producer;
static int sagad_runs;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void start_sagad(void)
{
    char name[32];
    const char *args[] = {"--definitions", defs_dir, NULL};
    snprintf(name, sizeof name, "poison-sagad-%d", ++sagad_runs);
    assert_int_equal(it_spawn(&sagad, name, "sagad", args), 0);
    assert_int_equal(it_wait_log(&sagad, "sagad running", 60000), 0);
}

static int setup(void **state)
{
    const char *migrate[] = {"migrate", "--dir", "migrations", NULL};
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    (void)state;
    it_isolate_db("poison");
    prefix = strdup(it_prefix("poison"));
    setenv("SAGA_TOPIC_PREFIX", prefix, 1);
    if (it_sagactl(NULL, 0, migrate) != 0 ||
        it_defs_dir("poison", "tests/integration/poison_sagas/*.json", defs_dir,
                    sizeof defs_dir) != 0)
        return -1;
    db = it_db();
    rd_kafka_conf_set(conf, "bootstrap.servers", it_env("SAGA_KAFKA_BROKERS"), errstr,
                      sizeof errstr);
    rd_kafka_conf_set(conf, "message.max.bytes", "4000000", errstr, sizeof errstr);
    producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (producer == NULL)
        return -1;
    start_sagad();
    return 0;
}

static int teardown(void **state)
{
    char cmd[600];
    (void)state;
    if (sagad.pid > 0)
        it_stop(&sagad);
    rd_kafka_destroy(producer);
    PQfinish(db);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", defs_dir);
    free(prefix);
    return system(cmd) == 0 ? 0 : -1;
}

/* sagactl start NAME --input INPUT: the new saga's id (malloc()ed). */
static char *start(const char *name, const char *input)
{
    char out[128];
    const char *args[] = {"start", name, "--input", input, NULL};
    assert_int_equal(it_sagactl(out, sizeof out, args), 0);
    assert_int_equal(strlen(out), 36);
    return strdup(out);
}

static long long count_of(const char *sql, const char *id)
{
    const char *p[1] = {id};
    return it_int(db, sql, id ? 1 : 0, id ? p : NULL);
}

/* Wait until sql (one parameter: id) counts at least n; the count. */
static long long wait_count(const char *sql, const char *id, long long n, int timeout_ms)
{
    int64_t until = now_ms() + timeout_ms;
    long long c;
    while ((c = count_of(sql, id)) < n && now_ms() < until)
        sleep_ms(50);
    return c;
}

static void wait_dispatched(const char *id, const char *kind, long long n)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM saga.saga_event WHERE saga_id = $1 AND kind = '%s'",
             kind);
    if (wait_count(sql, id, n, 30000) < n)
        fail_msg("saga %s: no %s after 30 s", id, kind);
}

static const char *status_of(const char *id)
{
    static char buf[32];
    const char *p[1] = {id};
    char *v = it_value(db, "SELECT status FROM saga.saga WHERE id = $1", 1, p);
    snprintf(buf, sizeof buf, "%s", v ? v : "(none)");
    free(v);
    return buf;
}

/* A reply to partition 0 of the reply topic of the step's service (so
 * that a batch holds them all, in this order), keyed by saga id. extra:
 * more JSON fields. */
static void reply(const char *svc, const char *id, int step, const char *phase,
                  int attempt, const char *status, const char *extra)
{
    char topic[256];
    size_t cap = 512 + (extra ? strlen(extra) : 0);
    char *msg = malloc(cap);
    assert_non_null(msg);
    /* The reply topic of the step's service, as its participant would
     * answer (named here, not looked up: one test sends replies while
     * PostgreSQL restarts). */
    snprintf(topic, sizeof topic, "%sreply.%s", prefix, svc);
    snprintf(msg, cap,
             "{\"v\":1,\"saga_id\":\"%s\",\"step\":%d,\"phase\":\"%s\",\"command_id\":"
             "\"%s/%d/%s\",\"attempt\":%d,\"status\":\"%s\"%s%s}",
             id, step, phase, id, step, phase, attempt, status, extra ? "," : "",
             extra ? extra : "");
    assert_int_equal(
        rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                          RD_KAFKA_V_KEY(id, 36), RD_KAFKA_V_VALUE(msg, strlen(msg)),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
        0);
    free(msg);
}

/* How many lines of sagad's log hold needle. */
static int log_lines(const char *needle)
{
    char line[8192];
    int n = 0;
    FILE *f = fopen(sagad.log, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

static void test_retry_after_out_of_range_does_not_stall(void **state)
{
    enum { N = 6, BAD = 3 };
    char *ids[N];
    int64_t t0;
    int rolled = log_lines("rolled back");
    (void)state;
    for (int i = 0; i < N; i++)
        ids[i] = start("poison_step", "{}");
    for (int i = 0; i < N; i++)
        wait_dispatched(ids[i], "step_dispatched", 1);
    /* One batch, one partition: good, good, good, poison, good, good. */
    for (int i = 0; i < N; i++)
        if (i == BAD)
            reply("poison", ids[i], 0, "invoke", 1, "retry",
                  "\"error\":{\"code\":\"busy\",\"message\":\"later\"},"
                  "\"retry_after\":10000000000000000");
        else
            reply("poison", ids[i], 0, "invoke", 1, "ok", "\"output\":{\"n\":1}");
    assert_int_equal(rd_kafka_flush(producer, 30000), 0);
    t0 = now_ms();
    for (int i = 0; i < N; i++)
        if (i != BAD)
            assert_string_equal(it_wait_final(db, ids[i], 10000), "completed");
    print_message("the 5 good replies behind a retry_after of 10^16 applied in %lld ms\n",
                  (long long)(now_ms() - t0));
    assert_true(now_ms() - t0 < 3000);
    /* The bad one: a dead letter with its reason, its saga untouched. */
    wait_count("SELECT count(*) FROM saga.dead_letter WHERE msg_key = $1", ids[BAD], 1,
               10000);
    {
        const char *p[1] = {ids[BAD]};
        char *why =
            it_value(db,
                     "SELECT reason FROM saga.dead_letter WHERE msg_key = $1 AND"
                     " source = 'reply' AND topic IS NOT NULL AND kafka_offset >= 0",
                     1, p);
        assert_non_null(why);
        if (strstr(why, "retry_after") == NULL)
            fail_msg("the dead letter's reason does not name retry_after: %s", why);
        free(why);
    }
    assert_string_equal(status_of(ids[BAD]), "running");
    /* Never a batch rolled back and consumed again in a loop. */
    sleep_ms(1000);
    assert_int_equal(log_lines("rolled back"), rolled);
    {
        char out[4096];
        const char *args[] = {"dead", "list", NULL};
        assert_int_equal(it_sagactl_all(out, sizeof out, 0, args), 0);
        if (strstr(out, "retry_after") == NULL)
            fail_msg("sagactl dead list does not show the reason:\n%s", out);
    }
    for (int i = 0; i < N; i++)
        free(ids[i]);
}

static void test_reply_refused_by_postgresql_is_isolated(void **state)
{
    enum { N = 5, BAD = 2 };
    char *ids[N], out[8192], dead_id[32];
    (void)state;
    /* PostgreSQL refuses one reply's write, whatever sagad does. */
    it_exec(db,
            "CREATE FUNCTION public.refuse_poison() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN IF NEW.output ? 'poison' THEN RAISE EXCEPTION"
            " 'poisoned output refused by the test trigger'; END IF; RETURN NEW; END$$");
    it_exec(db, "CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON saga.saga_step"
                " FOR EACH ROW EXECUTE FUNCTION public.refuse_poison()");
    for (int i = 0; i < N; i++)
        ids[i] = start("poison_step", "{}");
    for (int i = 0; i < N; i++)
        wait_dispatched(ids[i], "step_dispatched", 1);
    for (int i = 0; i < N; i++)
        reply("poison", ids[i], 0, "invoke", 1, "ok",
              i == BAD ? "\"output\":{\"poison\":true}" : "\"output\":{\"n\":2}");
    assert_int_equal(rd_kafka_flush(producer, 30000), 0);
    for (int i = 0; i < N; i++)
        if (i != BAD)
            assert_string_equal(it_wait_final(db, ids[i], 10000), "completed");
    assert_int_equal(
        wait_count("SELECT count(*) FROM saga.dead_letter WHERE msg_key = $1 AND"
                   " attempts = 3 AND reason LIKE '%poisoned output refused%'",
                   ids[BAD], 1, 10000),
        1);
    assert_string_equal(status_of(ids[BAD]), "running");
    assert_true(log_lines("applying its replies one by one") >= 1);
    /* Consumed again (a restart rewinds to the committed offsets at
     * worst): still one dead letter. */
    assert_int_equal(
        count_of("SELECT count(*) FROM saga.dead_letter WHERE msg_key = $1", ids[BAD]),
        1);
    /* The cause repaired, the operator replays it: it applies. */
    it_exec(db, "DROP TRIGGER refuse_poison ON saga.saga_step");
    {
        const char *p[1] = {ids[BAD]};
        char *v =
            it_value(db, "SELECT id FROM saga.dead_letter WHERE msg_key = $1", 1, p);
        assert_non_null(v);
        snprintf(dead_id, sizeof dead_id, "%s", v);
        free(v);
    }
    {
        const char *args[] = {"dead", "show", dead_id, NULL};
        assert_int_equal(it_sagactl_all(out, sizeof out, 0, args), 0);
        assert_non_null(strstr(out, "poisoned output refused"));
        assert_non_null(strstr(out, ids[BAD]));
    }
    {
        const char *args[] = {"dead",     "replay",          dead_id,
                              "--reason", "trigger removed", NULL};
        assert_int_equal(it_sagactl_all(out, sizeof out, 1, args), 0);
    }
    assert_string_equal(it_wait_final(db, ids[BAD], 10000), "completed");
    {
        const char *p[1] = {dead_id};
        assert_int_equal(
            it_int(db,
                   "SELECT count(*) FROM saga.dead_letter WHERE id = $1::bigint"
                   " AND replayed_at IS NOT NULL AND replay_reason ="
                   " 'trigger removed'",
                   1, p),
            1);
    }
    /* A second replay is refused: it was replayed already. */
    {
        const char *args[] = {"dead", "replay", dead_id, "--reason", "again", NULL};
        assert_int_equal(it_sagactl_all(out, sizeof out, 1, args), 1);
        assert_non_null(strstr(out, "already replayed"));
    }
    for (int i = 0; i < N; i++)
        free(ids[i]);
}

static void test_failing_timer_and_start_request_are_set_aside(void **state)
{
    char *bad, *good, *ok[3], *poisoned;
    (void)state;
    it_exec(db, "CREATE TABLE public.poisoned (id uuid PRIMARY KEY)");
    /* The second attempt of a poisoned saga's step cannot be written. */
    it_exec(db,
            "CREATE FUNCTION public.refuse_timer() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN IF NEW.attempts >= 2 AND EXISTS (SELECT 1 FROM public.poisoned"
            " WHERE id = NEW.saga_id) THEN RAISE EXCEPTION"
            " 'poisoned timer refused by the test trigger'; END IF; RETURN NEW; END$$");
    it_exec(db, "CREATE TRIGGER refuse_timer BEFORE UPDATE ON saga.saga_step"
                " FOR EACH ROW EXECUTE FUNCTION public.refuse_timer()");
    /* A saga whose input says poison cannot be created. */
    it_exec(db,
            "CREATE FUNCTION public.refuse_start() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN IF NEW.input ? 'poison' THEN RAISE EXCEPTION"
            " 'poisoned start refused by the test trigger'; END IF; RETURN NEW; END$$");
    it_exec(db, "CREATE TRIGGER refuse_start BEFORE INSERT ON saga.saga"
                " FOR EACH ROW EXECUTE FUNCTION public.refuse_start()");
    bad = start("poison_timer", "{}");
    good = start("poison_timer", "{}");
    {
        const char *p[1] = {bad};
        PQclear(PQexecParams(db, "INSERT INTO public.poisoned VALUES ($1)", 1, NULL, p,
                             NULL, NULL, 0));
    }
    /* Both time out after 1 s; the good one goes on to attempt 2. */
    assert_true(wait_count("SELECT count(*) FROM saga.saga_step WHERE saga_id = $1 AND"
                           " attempts >= 2",
                           good, 1, 15000) == 1);
    assert_int_equal(wait_count("SELECT count(*) FROM saga.dead_letter WHERE ref = $1 AND"
                                " source = 'timer' AND attempts = 3 AND reason LIKE"
                                " '%poisoned timer refused%'",
                                bad, 1, 15000),
                     1);
    assert_int_equal(
        count_of("SELECT count(*) FROM saga.saga WHERE id = $1 AND wake_at IS"
                 " NULL AND status = 'running'",
                 bad),
        1);
    assert_int_equal(
        count_of("SELECT count(*) FROM saga.saga_event WHERE saga_id = $1 AND"
                 " kind = 'saga_set_aside'",
                 bad),
        1);
    /* The good one's timers go on firing (the bad one is no longer
     * claimed with it). */
    assert_int_equal(
        wait_count("SELECT count(*) FROM saga.saga_step WHERE saga_id = $1 AND"
                   " attempts >= 3",
                   good, 1, 15000),
        1);
    {
        const char *args[] = {"compensate", good, "--reason", "test over", NULL};
        assert_int_equal(it_sagactl(NULL, 0, args), 0);
    }

    /* Start requests: three good ones and a poisoned one in one batch. */
    for (int i = 0; i < 3; i++)
        ok[i] = start("poison_step", "{\"n\":1}");
    {
        /* sagactl start waits to hear how its request went: refused. */
        char out[2048];
        const char *args[] = {"start", "poison_step", "--input", "{\"poison\":1}", NULL};
        assert_int_equal(it_sagactl_all(out, sizeof out, 1, args), 1);
        if (strstr(out, "set aside after 3 failed transactions") == NULL)
            fail_msg("sagactl start does not say why:\n%s", out);
        poisoned = it_value(db,
                            "SELECT id::text FROM saga.start_request WHERE input ?"
                            " 'poison'",
                            0, NULL);
        assert_non_null(poisoned);
    }
    for (int i = 0; i < 3; i++)
        wait_dispatched(ok[i], "step_dispatched", 1);
    assert_int_equal(
        wait_count(
            "SELECT count(*) FROM saga.start_request WHERE id = $1 AND processed_at"
            " IS NOT NULL AND error LIKE 'set aside after 3 failed transactions:%"
            "poisoned start refused%'",
            poisoned, 1, 15000),
        1);
    assert_int_equal(
        count_of("SELECT count(*) FROM saga.dead_letter WHERE ref = $1 AND"
                 " source = 'start_request' AND convert_from(payload, 'UTF8')"
                 " LIKE '%poison%'",
                 poisoned),
        1);
    assert_int_equal(count_of("SELECT count(*) FROM saga.saga WHERE id = $1", poisoned),
                     0);
    it_exec(db, "DROP TRIGGER refuse_timer ON saga.saga_step");
    it_exec(db, "DROP TRIGGER refuse_start ON saga.saga");
    for (int i = 0; i < 3; i++)
        free(ok[i]);
    free(poisoned);
    free(bad);
    free(good);
}

static void test_command_too_large_fails_its_step(void **state)
{
    enum { BLOB = 200000 };
    char *big, *small, *extra = malloc(BLOB + 64);
    (void)state;
    assert_non_null(extra);
    big = start("poison_big", "{}");
    wait_dispatched(big, "step_dispatched", 1);
    /* make's output is 200 kB (under the output limit); use's input holds
     * it six times: 1.2 MB, more than Kafka's default 1 MB message. */
    memcpy(extra, "\"output\":{\"blob\":\"", 18);
    memset(extra + 18, 'x', BLOB);
    memcpy(extra + 18 + BLOB, "\"}", 3);
    reply("poison_maker", big, 0, "invoke", 1, "ok", extra);
    free(extra);
    assert_int_equal(rd_kafka_flush(producer, 30000), 0);
    /* use fails definitively; make is compensated. */
    wait_dispatched(big, "compensation_dispatched", 1);
    assert_int_equal(count_of("SELECT count(*) FROM saga.saga_step WHERE saga_id = $1 AND"
                              " idx = 1 AND status = 'failed' AND error->>'code' ="
                              " 'message_too_large'",
                              big),
                     1);
    reply("poison_maker", big, 0, "compensate", 1, "ok", NULL);
    assert_int_equal(rd_kafka_flush(producer, 30000), 0);
    assert_string_equal(it_wait_final(db, big, 10000), "compensated");
    /* A small saga to the same service goes through: no breaker holds it. */
    small = start("poison_small", "{}");
    wait_dispatched(small, "step_dispatched", 1);
    reply("poison_user", small, 0, "invoke", 1, "ok", "\"output\":{}");
    assert_int_equal(rd_kafka_flush(producer, 30000), 0);
    assert_string_equal(it_wait_final(db, small, 10000), "completed");
    /* Refused once, said once, never resent; the outbox is empty. */
    sleep_ms(1500); /* a scan of the outbox every second: one would resend it */
    assert_int_equal(log_lines("failed with message_too_large"), 1);
    assert_int_equal(log_lines("will resend"), 0);
    assert_int_equal(log_lines("circuit breaker of service poison_user opened"), 0);
    assert_int_equal(count_of("SELECT count(*) FROM saga.outbox", NULL), 0);
    assert_int_equal(
        count_of("SELECT count(*) FROM saga.saga_event WHERE saga_id = $1 AND"
                 " kind = 'step_held'",
                 small),
        0);
    {
        size_t size = 1 << 20;
        char *out = malloc(size);
        const char *args[] = {"show", big, NULL};
        assert_non_null(out);
        assert_int_equal(it_sagactl_all(out, size, 0, args), 0);
        if (strstr(out, "message_too_large") == NULL)
            fail_msg("sagactl show does not say message_too_large:\n%.2000s", out);
        free(out);
    }
    free(big);
    free(small);
}

/* An ok reply whose output is over saga.limits max_output_bytes fails its
 * step definitively with message_too_large (never dead-lettered, never
 * retried); `sagactl limits set` takes effect in a running sagad. */
static void test_output_over_the_limit_fails_its_step(void **state)
{
    enum { BLOB = 300000 };
    char *a, *b, *extra = malloc(BLOB + 64);
    const char *raise[] = {"limits", "set",      "max_output_bytes",
                           "400000", "--reason", "test_poison: a bigger output",
                           NULL};
    const char *lower[] = {"limits", "set",      "max_output_bytes",
                           "262144", "--reason", "test_poison: back to the default",
                           NULL};
    long long dead0 = count_of("SELECT count(*) FROM saga.dead_letter", NULL);
    (void)state;
    assert_non_null(extra);
    memcpy(extra, "\"output\":{\"blob\":\"", 18);
    memset(extra + 18, 'y', BLOB);
    memcpy(extra + 18 + BLOB, "\"}", 3);
    a = start("poison_step", "{}");
    wait_dispatched(a, "step_dispatched", 1);
    reply("poison", a, 0, "invoke", 1, "ok", extra);
    assert_int_equal(rd_kafka_flush(producer, 30000), 0);
    assert_string_equal(it_wait_final(db, a, 10000), "compensated");
    assert_int_equal(count_of("SELECT count(*) FROM saga.saga_step WHERE saga_id = $1 AND"
                              " idx = 0 AND status = 'failed' AND error->>'code' ="
                              " 'message_too_large' AND error->>'message' LIKE"
                              " '%300012 bytes is over the limit of 262144%'",
                              a),
                     1);
    assert_int_equal(count_of("SELECT count(*) FROM saga.dead_letter", NULL), dead0);
    assert_true(log_lines("fails with message_too_large") >= 1);
    /* raised: read by the running sagad, the same output is stored */
    assert_int_equal(it_sagactl(NULL, 0, raise), 0);
    assert_int_equal(it_wait_log(&sagad, "max_output_bytes is now 400000", 20000), 0);
    b = start("poison_step", "{}");
    wait_dispatched(b, "step_dispatched", 1);
    reply("poison", b, 0, "invoke", 1, "ok", extra);
    assert_int_equal(rd_kafka_flush(producer, 30000), 0);
    assert_string_equal(it_wait_final(db, b, 10000), "completed");
    assert_int_equal(it_sagactl(NULL, 0, lower), 0);
    assert_int_equal(it_wait_log(&sagad, "max_output_bytes is now 262144", 20000), 0);
    free(extra);
    free(a);
    free(b);
}

static int own_pg(void)
{
    const char *v = getenv("SAGA_SERVICES_OWN_PG");
    return v != NULL && strcmp(v, "1") == 0;
}

static void test_database_restart_is_not_a_log_storm(void **state)
{
    enum { N = 30 };
    char *ids[N], *last_event;
    int before_unreachable = log_lines("PostgreSQL unreachable");
    int64_t lines_before;
    (void)state;
    if (!own_pg()) {
        print_message("SKIPPED: database restart (the database is external;"
                      " SAGA_SERVICES_OWN_PG=1 says the test may restart it,"
                      " as scripts/with-services sets under make check)\n");
        return;
    }
    /* Load: timers firing every second and replies coming in. */
    for (int i = 0; i < N; i++)
        ids[i] = start(i % 2 ? "poison_tick" : "poison_step", "{}");
    for (int i = 0; i < N; i++) /* dispatched, or held by the breaker */
        if (wait_count("SELECT count(*) FROM saga.saga_event WHERE saga_id = $1", ids[i],
                       2, 30000) < 2)
            fail_msg("saga %s: nothing after its start", ids[i]);
    last_event = it_value(db, "SELECT max(id) FROM saga.saga_event", 0, NULL);
    assert_non_null(last_event);
    lines_before = log_lines("");
    assert_int_equal(system("scripts/services restart-pg"), 0);
    for (int i = 0; i < N; i += 2)
        reply("poison", ids[i], 0, "invoke", 1, "ok", "\"output\":{}"); /* poison_step */
    assert_int_equal(rd_kafka_flush(producer, 30000), 0);
    PQreset(db);
    assert_int_equal(PQstatus(db), CONNECTION_OK);
    /* Replies applied, timers fired, after the restart. */
    for (int i = 0; i < N; i += 2)
        assert_string_equal(it_wait_final(db, ids[i], 30000), "completed");
    for (int i = 1; i < N; i += 2) {
        char sql[256];
        /* A timeout, a new attempt or a hold by the breaker: a timer fired. */
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM saga.saga_event WHERE saga_id = $1 AND id > %s",
                 last_event);
        if (wait_count(sql, ids[i], 1, 30000) < 1)
            fail_msg("saga %s: no timer fired after the restart", ids[i]);
    }
    free(last_event);
    {
        int unreachable = log_lines("PostgreSQL unreachable") - before_unreachable;
        int64_t lines = log_lines("") - lines_before;
        print_message("a PostgreSQL restart under load: %d \"unreachable\" line(s), %lld "
                      "log lines in all\n",
                      unreachable, (long long)lines);
        assert_true(unreachable <= 2);
        assert_true(lines <= 40);
        assert_true(log_lines("reconnected to PostgreSQL") >= 1);
    }
    for (int i = 0; i < N; i++)
        free(ids[i]);
}

static void test_stop_line_counts_what_was_received(void **state)
{
    long long dead;
    char cmd[1024], line[64] = "";
    FILE *f;
    int rc;
    (void)state;
    /* One sagad has run every test so far and set aside every row. */
    dead = count_of("SELECT count(*) FROM saga.dead_letter", NULL);
    rc = it_stop(&sagad);
    snprintf(cmd, sizeof cmd,
             "grep -o '[0-9]* set aside (sagactl' '%s' | tail -n 1 | cut -d' ' -f1",
             sagad.log);
    f = popen(cmd, "r");
    assert_non_null(f);
    if (fgets(line, sizeof line, f) == NULL)
        line[0] = '\0';
    pclose(f);
    start_sagad(); /* for the next test, whatever happens below */
    assert_int_equal(rc, 0);
    /* Each was counted once, however often its batch was tried. */
    print_message("stop line: %lld set aside; saga.dead_letter holds %lld\n", atoll(line),
                  dead);
    assert_true(dead >= 4);
    assert_int_equal(atoll(line), dead);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_after_out_of_range_does_not_stall),
        cmocka_unit_test(test_reply_refused_by_postgresql_is_isolated),
        cmocka_unit_test(test_failing_timer_and_start_request_are_set_aside),
        cmocka_unit_test(test_command_too_large_fails_its_step),
        cmocka_unit_test(test_output_over_the_limit_fails_its_step),
        cmocka_unit_test(test_stop_line_counts_what_was_received),
        cmocka_unit_test(test_database_restart_is_not_a_log_storm),
    };
    return cmocka_run_group_tests_name("poison messages (PostgreSQL + Kafka)", tests,
                                       setup, teardown);
}
