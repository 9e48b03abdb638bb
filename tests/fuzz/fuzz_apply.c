/* fuzz_apply.c - libFuzzer target: replies and commands through the real
 * apply path, against PostgreSQL and Kafka.
 *
 * sagad's side: a real engine (saga_engine_new) on a database of its own,
 * driven without its loop: each input becomes one batch of 1..16 reply
 * messages fed with saga__engine_feed_replies() — well-formed replies aimed
 * at the live sagas' outstanding commands (real ids, steps, phases, command
 * ids and attempts; ok, failed or retry), the same mutated (fields missing,
 * of the wrong type, out of range, huge, deep, odd unicode, duplicate keys,
 * truncated, extra fields, ...), and raw bytes from the input — then
 * saga__engine_turn() fires timers, starts sagas and sends the outbox.
 * libsaga's side: 0..3 commands fed to two participants with a barrier in
 * the database (one with group commit, one without) whose handler writes a
 * row in the command's transaction.
 *
 * Checked after every input (abort() on violation, so libFuzzer keeps the
 * input as a crash file):
 *  - saga__engine_feed_replies and saga__engine_turn return SAGA_OK;
 *  - every message fed is counted exactly once: applied + ignored +
 *    rejected + malformed grows by the batch's size; malformed grows by
 *    the number of messages saga_reply_decode refuses; dead_letters grows
 *    by the rows saga.dead_letter got at the batch's offsets, each with a
 *    reason, and every refused message is among them;
 *  - the engine's and the participants' connections are not left inside
 *    a transaction (pg_stat_activity, by application_name);
 *  - saga__participant_feed returns SAGA_OK; a command the decoder or the
 *    reply_to rule refuses is dead-lettered (malformed and dead_lettered
 *    +1), any other is answered (handled +1);
 *  - the handlers' rows and the barrier rows agree: a row for exactly the
 *    commands the barrier recorded as handled with an ok reply, never two
 *    for one command, no barrier row without its reply.
 *
 * Needs SAGA_PG_URL (a postgresql:// URL; a database fz_apply_<pid> is
 * created on that server and dropped at exit) and SAGA_KAFKA_BROKERS;
 * topics are prefixed fz<pid>-<time>. so runs never meet. Migrations are
 * read from SAGA_MIGRATIONS_DIR (default "migrations": run from the
 * repository's root). sagad's log lines are errors only;
 * FUZZ_APPLY_VERBOSE=1 prints them from info on, and the participants'
 * log lines. Built and run by scripts/fuzz.
 *
 * Input layout (a byte past the end reads as 0):
 *   header h            replies: 1 + h % 16; commands: h / 16 % 4
 *   per reply: op
 *     op < 24           raw: length (2 bytes, little endian, at most 8192),
 *                       then that many bytes as the message
 *     op < 32           the previous message again (a duplicate; the first
 *                       message reads it as raw)
 *     else              a reply to live step #t (byte t), status op % 3;
 *                       (op / 4) % 8 >= 5: 1..3 mutations, each a kind
 *                       byte and a 2-byte argument
 *   per command: op
 *     op < 24           raw, as for replies
 *     else              a command: bytes saga (pool or fresh id), step,
 *                       outcome; op selects the participant, the phase
 *                       and the reply topic; mutations as for replies */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "saga/client.h"
#include "saga/participant.h"
#include "saga/protocol.h"
#include "saga_definition.h"
#include "saga_engine.h"
#include "saga_engine_internal.h"
#include <librdkafka/rdkafka.h>

#include "saga_shared.h"
#include "saga_log.h"
#include "saga_migrate.h"
#include "saga_participant_internal.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_REPLIES 16
#define MAX_LIVE    256
#define RAW_MAX     8192
#define POOL        24  /* saga ids the participants see again and again */
#define LIVE_LOW    16  /* fewer live steps than this: start more sagas */
#define RUNNING_MAX 400 /* ... unless this many sagas are running already */
#define START_EACH  12
#define STARTUP_S   60

/* A participant and what the checks need of it. */
typedef struct part {
    const char *service; /* also its schema */
    int tx_commands;
    saga_participant *p;
    char app[64];        /* its connection's application_name */
    char own_reply[128]; /* <prefix>reply.<service> */
    uint64_t log_lines;
} part;

/* A step that waits for an answer, as the database has it. */
typedef struct live_step {
    char saga_id[SAGA_ID_LEN + 1];
    int step, attempts;
    saga_phase phase;
} live_step;

static struct {
    char url[1200];  /* the run's database */
    char base[1024]; /* SAGA_PG_URL as given */
    char dbname[64];
    char prefix[64];
    char reply_topic[128];
    char engine_app[64];
    PGconn *side;
    saga_engine *engine;
    saga_client *client;
    part parts[2];
    int64_t next_offset;
    uint64_t inputs, started, fresh_ids;
    int verbose;
    /* The batch being fed, for the report of a violation. */
    char *msgs[MAX_REPLIES];
    size_t lens[MAX_REPLIES];
    int nmsgs;
    const char *pcmd; /* the command being fed */
    size_t pcmd_len;
    live_step live[MAX_LIVE];
    int nlive;
    long long running;
} G = {.parts = {{.service = "fzp", .tx_commands = 0},
                 {.service = "fzq", .tx_commands = 1}}};

/* ---- failing loudly ---- */

static void print_escaped(const char *s, size_t len, size_t max)
{
    for (size_t i = 0; i < len && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 32 && c < 127 && c != '\\')
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    if (len > max)
        fprintf(stderr, "... (%zu bytes)", len);
    fputc('\n', stderr);
}

static void die(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2), noreturn))
#endif
    ;

static void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "fuzz_apply: INVARIANT VIOLATED (input %llu): ",
            (unsigned long long)G.inputs);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    for (int i = 0; i < G.nmsgs; i++) {
        fprintf(stderr, "  reply %d: ", i);
        print_escaped(G.msgs[i], G.lens[i], 400);
    }
    if (G.pcmd != NULL) {
        fprintf(stderr, "  command: ");
        print_escaped(G.pcmd, G.pcmd_len, 400);
    }
    abort();
}

/* Set-up problems are not findings: say so and stop. */
static void setup_failed(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2), noreturn))
#endif
    ;

static void setup_failed(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "fuzz_apply: set-up failed: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

/* ---- the side connection ---- */

static PGresult *q(const char *sql, int n, const char *const *params)
{
    PGresult *r = PQexecParams(G.side, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(G.side));
        PQclear(r);
        setup_failed("side query failed: %s\n%s", msg, sql);
    }
    return r;
}

static long long q_int(const char *sql, int n, const char *const *params)
{
    PGresult *r = q(sql, n, params);
    long long v = PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)
                      ? strtoll(PQgetvalue(r, 0, 0), NULL, 10)
                      : 0;
    PQclear(r);
    return v;
}

static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static PGconn *connect_to(const char *url)
{
    PGconn *db = PQconnectdb(url);
    if (PQstatus(db) != CONNECTION_OK)
        setup_failed("cannot connect to %s: %s", url, PQerrorMessage(db));
    PQsetNoticeProcessor(db, ignore_notice, NULL);
    return db;
}

/* SAGA_PG_URL with another database and an application_name (app NULL:
 * none). */
static void url_for(char *out, size_t size, const char *dbname, const char *app)
{
    const char *slash = strrchr(G.base, '/');
    const char *query = strchr(slash, '?');
    snprintf(out, size, "%.*s/%s%s%s%s%s", (int)(slash - G.base), G.base, dbname,
             query ? query : "",
             app == NULL ? ""
             : query     ? "&"
                         : "?",
             app == NULL ? "" : "application_name=", app == NULL ? "" : app);
}

static void drop_database(void)
{
    char url[1200], sql[128];
    PGconn *db;
    url_for(url, sizeof url, "postgres", NULL);
    db = PQconnectdb(url);
    if (PQstatus(db) == CONNECTION_OK) {
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", G.dbname);
        PQclear(PQexec(db, sql));
    }
    PQfinish(db);
}

/* ---- start-up ---- */

static const char *const definitions[] = {
    "{\"name\":\"fz_seq\",\"deadline\":\"20s\",\"defaults\":{\"timeout\":\"1500ms\","
    "\"retry\":{\"max_attempts\":3,\"backoff\":\"50ms\",\"max_backoff\":\"200ms\","
    "\"jitter\":0.2},\"compensation_retry\":{\"max_attempts\":4,\"backoff\":\"50ms\","
    "\"max_backoff\":\"200ms\"}},\"steps\":["
    "{\"name\":\"s0\",\"service\":\"fza\",\"action\":\"a0\",\"compensation\":\"u0\","
    "\"input\":{\"n\":\"${input.n}\"}},"
    "{\"name\":\"s1\",\"service\":\"fzb\",\"action\":\"a1\",\"compensation\":\"u1\","
    "\"input\":{\"id\":\"${steps.s0.output.id}\",\"n\":\"${input.n}\"}},"
    "{\"name\":\"s2\",\"service\":\"fza\",\"action\":\"a2\",\"pivot\":true,"
    "\"input\":{\"prev\":\"${steps.s1.output}\"}},"
    /* s2's output four times: one of about 262,000 bytes (under sagad's
     * output limit) makes a command larger than Kafka takes (refused). */
    "{\"name\":\"s3\",\"service\":\"fzb\",\"action\":\"a3\",\"input\":{"
    "\"a\":\"${steps.s2.output}\",\"b\":\"${steps.s2.output}\","
    "\"c\":\"${steps.s2.output}\",\"d\":\"${steps.s2.output}\"}}]}",
    "{\"name\":\"fz_par\",\"defaults\":{\"timeout\":\"1200ms\",\"retry\":"
    "{\"max_attempts\":2,\"backoff\":\"50ms\"},\"compensation_retry\":"
    "{\"max_attempts\":3,\"backoff\":\"50ms\"}},\"steps\":["
    "{\"name\":\"p0\",\"service\":\"fza\",\"action\":\"a0\",\"compensation\":\"u0\","
    "\"input\":{}},"
    "{\"name\":\"g1\",\"group\":\"g\",\"service\":\"fza\",\"action\":\"a1\","
    "\"compensation\":\"u1\",\"input\":{\"from\":\"${steps.p0.output.id}\"}},"
    "{\"name\":\"g2\",\"group\":\"g\",\"service\":\"fzb\",\"action\":\"a2\","
    "\"compensation\":\"u2\",\"input\":{}},"
    "{\"name\":\"p3\",\"service\":\"fzb\",\"action\":\"a3\",\"compensation\":null,"
    "\"input\":{\"from\":\"${steps.g2.output}\"}}]}",
};

static void start_sagas(int n)
{
    for (int i = 0; i < n; i++) {
        char id[SAGA_ID_LEN + 1];
        saga_error err = {0};
        json_t *input = json_pack("{s:I}", "n", (json_int_t)G.started);
        int rc = saga_client_start(G.client, G.started % 2 ? "fz_par" : "fz_seq", input,
                                   NULL, id, NULL, &err);
        json_decref(input);
        if (rc != SAGA_OK)
            setup_failed("saga_client_start: %s", err.message);
        G.started++;
    }
}

static void turn(void)
{
    int rc = saga__engine_turn(G.engine);
    if (rc != SAGA_OK)
        die("saga__engine_turn returned %d (%s)", rc, saga_strerror(rc));
}

/* Turn until every start request became a saga and the outbox is sent. */
static void turn_until_sent(void)
{
    time_t until = time(NULL) + STARTUP_S;
    for (;;) {
        struct timespec ts = {0, 20 * 1000000L};
        turn();
        if (q_int("SELECT (SELECT count(*) FROM saga.start_request WHERE processed_at IS "
                  "NULL) + (SELECT count(*) FROM saga.outbox)",
                  0, NULL) == 0)
            return;
        if (time(NULL) > until)
            setup_failed("the first commands were not sent within %d s", STARTUP_S);
        nanosleep(&ts, NULL);
    }
}

static void part_log(saga_participant_log_level level, const char *message, void *arg)
{
    part *pt = arg;
    pt->log_lines++;
    if (G.verbose)
        fprintf(stderr, "%s: %s: %s\n", pt->service,
                level == SAGA_PARTICIPANT_LOG_ERROR ? "ERROR" : "warn", message);
}

/* The handler: a row in <service>.effects in the command's transaction,
 * then the outcome the payload asks for. */
static void handle(const saga_command *cmd, PGconn *db, saga_result *res, void *arg)
{
    const char *outcome = json_string_value(json_object_get(cmd->payload, "outcome"));
    char step[16];
    const char *params[4] = {cmd->saga_id, step, saga_phase_name(cmd->phase),
                             cmd->command_id};
    PGresult *r;
    (void)arg;
    snprintf(step, sizeof step, "%d", cmd->step);
    r = PQexecParams(db,
                     "INSERT INTO effects (saga_id, step, phase, command_id)"
                     " VALUES ($1, $2, $3, $4)",
                     4, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        saga_result_retry(res, 0, "effect not written: %s", PQerrorMessage(db));
        PQclear(r);
        return;
    }
    PQclear(r);
    if (outcome == NULL)
        outcome = "ok";
    if (strcmp(outcome, "fail") == 0) {
        saga_result_fail(res, "declined", "step %d declined", cmd->step);
    } else if (strcmp(outcome, "retry") == 0) {
        saga_result_retry(res, 100, "busy");
    } else if (strcmp(outcome, "big") == 0) {
        /* Over libsaga's max_output_bytes: answered failed, rolled back. */
        size_t n = 300 * 1024;
        char *blob = malloc(n + 1);
        if (blob == NULL) {
            saga_result_retry(res, 0, "out of memory");
            return;
        }
        memset(blob, 'b', n);
        blob[n] = '\0';
        saga_result_ok(res, json_pack("{s:s}", "blob", blob));
        free(blob);
    } else if (strcmp(outcome, "sqlerr") == 0) {
        PQclear(PQexec(db, "SELECT 1/0"));
        saga_result_ok(res, NULL); /* its transaction failed: libsaga retries */
    } else if (strcmp(outcome, "nores") == 0) {
        /* no result: answered retry */
    } else if (strcmp(outcome, "twice") == 0) {
        saga_result_ok(res, json_pack("{s:s}", "id", cmd->command_id));
        saga_result_fail(res, "late", "ignored");
    } else {
        saga_result_ok(res,
                       json_pack("{s:s, s:i}", "id", cmd->command_id, "n", cmd->attempt));
    }
}

static void start_participant(part *pt, const char *brokers)
{
    saga_participant_options o = {0};
    saga_error err = {0};
    char url[1200], sql[400];
    snprintf(pt->app, sizeof pt->app, "fz_apply_%ld_%s", (long)getpid(), pt->service);
    snprintf(pt->own_reply, sizeof pt->own_reply, "%s.%s", G.reply_topic, pt->service);
    url_for(url, sizeof url, G.dbname, pt->app);
    snprintf(sql, sizeof sql,
             "CREATE SCHEMA %s; CREATE TABLE %s.effects (saga_id uuid NOT NULL,"
             " step int NOT NULL, phase text NOT NULL, command_id text NOT NULL)",
             pt->service, pt->service);
    {
        PGresult *r = PQexec(G.side, sql);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            setup_failed("%s: %s", sql, PQerrorMessage(G.side));
        PQclear(r);
    }
    o.brokers = brokers;
    o.service = pt->service;
    o.topic_prefix = G.prefix;
    o.db_url = url;
    o.db_schema = pt->service;
    o.tx_commands = pt->tx_commands;
    if (saga_participant_new(&o, &pt->p, &err) != SAGA_OK)
        setup_failed("saga_participant_new %s: %s", pt->service, err.message);
    saga_participant_set_logger(pt->p, part_log, pt);
    if (saga_participant_on(pt->p, SAGA_PHASE_INVOKE, "act", handle, pt) != SAGA_OK ||
        saga_participant_on(pt->p, SAGA_PHASE_COMPENSATE, "undo", handle, pt) != SAGA_OK)
        setup_failed("registering handlers");
}

/* The reply topics the participants may answer on (<prefix>reply.<svc>)
 * exist, so that a reply there is delivered, not refused. */
static void create_reply_topics(const char *brokers)
{
    saga_error err = {0};
    char errstr[256];
    const char *topics[2] = {G.parts[0].own_reply, G.parts[1].own_reply};
    rd_kafka_conf_t *conf = saga__kafka_conf(brokers, "fuzz-apply-admin", &err);
    rd_kafka_t *rk;
    if (conf == NULL)
        setup_failed("%s", err.message);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (rk == NULL)
        setup_failed("admin client: %s", errstr);
    if (saga__kafka_ensure_topics(rk, topics, 2, 1, 20000, &err) != SAGA_OK)
        setup_failed("%s", err.message);
    rd_kafka_destroy(rk);
}

static void shut_down(void)
{
    saga_client_free(G.client);
    for (int i = 0; i < 2; i++)
        saga_participant_free(G.parts[i].p);
    saga_engine_free(G.engine);
    if (G.side != NULL) {
        PGresult *r = PQexec(G.side, "SELECT count(*) FROM saga.saga WHERE status IN"
                                     " ('running', 'compensating')");
        fprintf(stderr,
                "fuzz_apply: %llu inputs, %llu sagas started, %s running at the end; "
                "participants' log lines: %llu, %llu\n",
                (unsigned long long)G.inputs, (unsigned long long)G.started,
                PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0) : "?",
                (unsigned long long)G.parts[0].log_lines,
                (unsigned long long)G.parts[1].log_lines);
        PQclear(r);
        PQfinish(G.side);
    }
    drop_database();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *pg = getenv("SAGA_PG_URL"), *brokers = getenv("SAGA_KAFKA_BROKERS");
    const char *migrations = getenv("SAGA_MIGRATIONS_DIR");
    saga_definition *defs[2];
    saga_engine_config cfg = {0};
    saga_error err = {0};
    char url[1200], sql[160];
    int applied = 0;
    PGconn *admin;
    (void)argc;
    (void)argv;

    if (pg == NULL || *pg == '\0' || brokers == NULL || *brokers == '\0')
        setup_failed("SAGA_PG_URL and SAGA_KAFKA_BROKERS must name a PostgreSQL and a "
                     "Kafka broker (run it under scripts/with-services, or scripts/fuzz "
                     "--only apply with them set)");
    if (strncmp(pg, "postgres", 8) != 0 || strrchr(pg, '/') == NULL)
        setup_failed("SAGA_PG_URL must be a postgresql:// URL, not \"%s\"", pg);
    G.verbose = getenv("FUZZ_APPLY_VERBOSE") != NULL &&
                strcmp(getenv("FUZZ_APPLY_VERBOSE"), "1") == 0;
    /* sagad's warnings (a saga failed, a breaker opened) are what the
     * fuzzer does to it all the time: only errors, unless verbose. */
    saga_log_set_level(G.verbose ? SAGA_LOG_INFO : SAGA_LOG_ERROR);
    snprintf(G.base, sizeof G.base, "%s", pg);
    snprintf(G.dbname, sizeof G.dbname, "fz_apply_%ld", (long)getpid());
    snprintf(G.prefix, sizeof G.prefix, "fz%ld-%lld.", (long)getpid(),
             (long long)time(NULL));
    saga__topic_reply(G.reply_topic, sizeof G.reply_topic, G.prefix);
    snprintf(G.engine_app, sizeof G.engine_app, "fz_apply_%ld_sagad", (long)getpid());
    /* Offsets unique across runs too (saga.dead_letter has a unique
     * (topic, partition, offset)), although each run has its database. */
    G.next_offset = (int64_t)time(NULL) * 1000000;

    admin = connect_to(pg);
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", G.dbname);
    PQclear(PQexec(admin, sql));
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", G.dbname);
    {
        PGresult *r = PQexec(admin, sql);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            setup_failed("%s: %s", sql, PQerrorMessage(admin));
        PQclear(r);
    }
    PQfinish(admin);
    atexit(shut_down);
    url_for(G.url, sizeof G.url, G.dbname, NULL);
    G.side = connect_to(G.url);
    if (saga_migrate(G.side, migrations ? migrations : "migrations", &applied, NULL, NULL,
                     &err) != SAGA_OK)
        setup_failed("migrating: %s", err.message);

    for (int i = 0; i < 2; i++) {
        saga_def_problems problems = {0};
        if (saga_definition_parse(definitions[i], strlen(definitions[i]), &defs[i],
                                  &problems) != SAGA_OK)
            setup_failed("definition %d: %s: %s", i, problems.items[0].where,
                         problems.items[0].message);
    }
    url_for(url, sizeof url, G.dbname, G.engine_app);
    cfg.db_url = url;
    cfg.brokers = brokers;
    cfg.topic_prefix = G.prefix;
    cfg.group_id = G.prefix; /* a group nobody else is in */
    cfg.name = "fuzz-apply";
    /* Replies are fed as if from the shared reply topic (the feed has no
     * topic per service): accepted as during an upgrade, so that the
     * machine, not the topic rule, decides about them. */
    cfg.shared_replies = 1;
    cfg.batch_max = MAX_REPLIES;
    cfg.observe_interval_ms = 3600 * 1000;
    /* Commands to fzb wait behind a bulkhead of 6: the gate's holds are
     * part of what a reply causes. */
    cfg.gate.service_limits = "fzb=6";
    /* A breaker that opens and closes often, so that the sagas keep moving
     * and its holds and probes are part of the run too. */
    cfg.gate.breaker.failure_threshold = 8;
    cfg.gate.breaker.cooldown_ms = 400;
    cfg.gate.breaker.max_cooldown_ms = 1600;
    if (saga_engine_new(&cfg, defs, 2, &G.engine, &err) != SAGA_OK)
        setup_failed("saga_engine_new: %s", err.message);

    for (int i = 0; i < 2; i++)
        start_participant(&G.parts[i], brokers);
    create_reply_topics(brokers);
    if (saga_client_new(G.url, &G.client, &err) != SAGA_OK)
        setup_failed("saga_client_new: %s", err.message);
    start_sagas(3 * START_EACH);
    turn_until_sent();
    fprintf(stderr, "fuzz_apply: database %s, topics %s*, %llu sagas started\n", G.dbname,
            G.prefix, (unsigned long long)G.started);
    return 0;
}

/* ---- reading the input ---- */

typedef struct reader {
    const uint8_t *p;
    size_t n;
} reader;

static unsigned u8(reader *r)
{
    if (r->n == 0)
        return 0;
    r->n--;
    return *r->p++;
}

static unsigned u16(reader *r)
{
    unsigned lo = u8(r);
    return lo | u8(r) << 8;
}

/* ---- building messages ---- */

/* A malloc()ed printf. */
static char *fmt(const char *f, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

static char *fmt(const char *f, ...)
{
    va_list ap;
    int n;
    char *s;
    va_start(ap, f);
    n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    s = malloc((size_t)n + 1);
    if (s == NULL)
        abort();
    va_start(ap, f);
    vsnprintf(s, (size_t)n + 1, f, ap);
    va_end(ap);
    return s;
}

static char *quoted(const char *s)
{
    return fmt("\"%s\"", s);
}

/* A JSON string of n copies of c. */
static char *long_string(size_t n, char c)
{
    char *s = malloc(n + 3);
    if (s == NULL)
        abort();
    s[0] = '"';
    memset(s + 1, c, n);
    s[n + 1] = '"';
    s[n + 2] = '\0';
    return s;
}

/* A message as an ordered list of fields (key, JSON text of the value),
 * so that a mutation can drop, retype, repeat or add one. */
typedef struct field {
    char *key; /* JSON text of the key, quotes included */
    char *val;
} field;

typedef struct msg {
    field f[40];
    int n;
} msg;

static void msg_add(msg *m, const char *key, char *val)
{
    if (m->n == 40) {
        free(val);
        return;
    }
    m->f[m->n].key = quoted(key);
    m->f[m->n].val = val;
    m->n++;
}

static field *msg_get(msg *m, const char *key)
{
    char name[64];
    snprintf(name, sizeof name, "\"%s\"", key);
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->f[i].key, name) == 0)
            return &m->f[i];
    return NULL;
}

static void msg_set(msg *m, const char *key, char *val)
{
    field *f = msg_get(m, key);
    if (f == NULL) {
        msg_add(m, key, val);
        return;
    }
    free(f->val);
    f->val = val;
}

static void msg_del(msg *m, const char *key)
{
    field *f = msg_get(m, key);
    if (f == NULL)
        return;
    free(f->key);
    free(f->val);
    memmove(f, f + 1, sizeof *f * (size_t)(m->f + m->n - (f + 1)));
    m->n--;
}

static void msg_clear(msg *m)
{
    for (int i = 0; i < m->n; i++) {
        free(m->f[i].key);
        free(m->f[i].val);
    }
    m->n = 0;
}

static char *msg_text(const msg *m, size_t *len)
{
    size_t total = 3;
    char *s, *p;
    for (int i = 0; i < m->n; i++)
        total += strlen(m->f[i].key) + strlen(m->f[i].val) + 2;
    s = p = malloc(total);
    if (s == NULL)
        abort();
    *p++ = '{';
    for (int i = 0; i < m->n; i++) {
        size_t k = strlen(m->f[i].key), v = strlen(m->f[i].val);
        if (i > 0)
            *p++ = ',';
        memcpy(p, m->f[i].key, k);
        p += k;
        *p++ = ':';
        memcpy(p, m->f[i].val, v);
        p += v;
    }
    *p++ = '}';
    *p = '\0';
    *len = (size_t)(p - s);
    return s;
}

/* Strings that are odd for somebody: valid and invalid escapes, raw UTF-8
 * that is fine, overlong, a surrogate, past U+10FFFF, direction marks,
 * NULs, raw control characters. */
static const char *const odd_strings[] = {
    "\"caf\\u00e9\"",
    "\"caf\xc3\xa9\"",
    "\"\\uffff\\ufffe\"",
    "\"\\ud83d\\ude00\"",
    "\"\\ud800\"",
    "\"\\udc00\\ud800\"",
    "\"\xff\xfe\"",
    "\"\xc0\xaf\"",
    "\"\xed\xa0\x80\"",
    "\"\xf4\x90\x80\x80\"",
    "\"\\u2028\\u2029\xe2\x80\xae\"",
    "\"\xef\xbb\xbf bom\"",
    "\"tab\\there\\nnew\\\\line\\/\"",
    "\"\\u0000\"",
    "\"a\\u0000b\"",
    "\"\\x41\"",
    "\"\\u12\"",
    "\"\x01\x1f raw control\"",
    "\"\"",
    "\"  \"",
};
#define NODD (sizeof odd_strings / sizeof odd_strings[0])

/* Values of the wrong type or out of range, for any field. */
static const char *const odd_values[] = {
    "-1",
    "0",
    "10000",
    "1000001",
    "2147483648",
    "-2147483649",
    "9223372036854775807",
    "-9223372036854775808",
    "99999999999999999999",
    "10000000000000000",
    "2592000001",
    "253402300800000",
    "1.5",
    "1e2",
    "-0",
    "1E400",
    "true",
    "false",
    "null",
    "[]",
    "{}",
    "[1,2,3]",
    "{\"a\":1}",
    "\"1\"",
    "\"invoke\"",
    "\"ok\"",
    "NaN",
    "Infinity",
    "01",
    "+1",
};
#define NVAL (sizeof odd_values / sizeof odd_values[0])

static const char *const reply_fields[] = {"v",          "saga_id",    "step",   "phase",
                                           "command_id", "attempt",    "status", "output",
                                           "error",      "retry_after"};
static const char *const command_fields[] = {
    "v",      "saga_id",    "saga",    "saga_version", "step",     "step_name", "phase",
    "action", "command_id", "attempt", "deadline",     "reply_to", "payload"};

/* A nested output: depth levels of arrays (jansson stops at 2048). */
static char *deep(unsigned depth)
{
    char *s = malloc(2 * (size_t)depth + 16), *p = s;
    if (s == NULL)
        abort();
    p += sprintf(p, "{\"d\":");
    for (unsigned i = 0; i < depth; i++)
        *p++ = '[';
    for (unsigned i = 0; i < depth; i++)
        *p++ = ']';
    sprintf(p, "}");
    return s;
}

/* A large output: one string of about the size arg picks, or as many
 * small keys. Around sagad's limit (262,144), and past the message's
 * (1 MiB). */
static char *large(unsigned arg)
{
    static const size_t sizes[] = {1000, 65536, 262000, 262200, 300000, 1048000, 1100000};
    size_t bytes = sizes[arg % 7];
    if (arg & 0x100) {
        size_t n = bytes / 16, len = 0;
        char *s = malloc(n * 24 + 8);
        if (s == NULL)
            abort();
        s[len++] = '{';
        for (size_t i = 0; i < n; i++)
            len += (size_t)sprintf(s + len, "%s\"k%zu\":%zu", i ? "," : "", i, i);
        s[len++] = '}';
        s[len] = '\0';
        return s;
    }
    {
        char *str = long_string(bytes, 'x'), *s = fmt("{\"blob\":%s}", str);
        free(str);
        return s;
    }
}

enum { POST_TRUNCATE = 12, POST_WRAP, POST_AROUND, POST_NUMBER };

/* Apply mutation kind (with arg) to the field list m; fields names the
 * message's fields. Mutations of the text are left to post_mutate (*post
 * gets their kind). */
static void mutate(msg *m, unsigned kind, unsigned arg, const char *const *fields,
                   int nfields, int *post)
{
    const char *name = fields[arg % (unsigned)nfields];
    field *f = msg_get(m, name);
    switch (kind % 16) {
    case 0: /* a field missing */
        msg_del(m, name);
        break;
    case 1: /* a value of the wrong type or out of range */
        msg_set(m, name, fmt("%s", odd_values[(arg >> 4) % NVAL]));
        break;
    case 2: /* a huge string */
    {
        static const size_t sizes[] = {255, 256, 300, 5000, 70000, 1100000};
        msg_set(m, name, long_string(sizes[(arg >> 4) % 6], (char)('a' + arg % 26)));
        break;
    }
    case 3: /* a deep output */
        msg_set(m, "output", deep(1 + (arg % 2100)));
        break;
    case 4: /* a large output */
        msg_set(m, "output", large(arg));
        break;
    case 5: /* an odd string */
        msg_set(m, name, fmt("%s", odd_strings[(arg >> 4) % NODD]));
        break;
    case 6: /* a key twice, at the top or inside the output */
        if (arg & 0x80)
            msg_set(m, "output", fmt("{\"id\":1,\"x\":2,\"id\":3}"));
        else if (f != NULL)
            msg_add(m, name, fmt("%s", f->val));
        break;
    case 7: /* extra fields, unknown to the reader */
        msg_add(m, "extra", fmt("{\"nested\":[1,{\"a\":null}],\"s\":\"x\"}"));
        if (arg & 1)
            msg_add(m, "v2", fmt("2"));
        if (arg & 2)
            msg_add(m, "", fmt("\"empty key\""));
        break;
    case 8: /* null for a field */
        msg_set(m, name, fmt("null"));
        break;
    case 9: /* an odd string as an output value, or as a key in it */
        if (arg & 0x80)
            msg_set(m, "output", fmt("{%s:1}", odd_strings[(arg >> 4) % NODD]));
        else
            msg_set(m, "output", fmt("{\"s\":%s}", odd_strings[(arg >> 4) % NODD]));
        break;
    case 10: /* an error object with odd parts */
        msg_set(m, "error",
                fmt("{\"code\":%s,\"message\":%s}", odd_strings[(arg >> 4) % NODD],
                    odd_strings[(arg >> 9) % NODD]));
        break;
    case 11: /* a long error message: cut at 4 KiB, not refused */
    {
        char *str = long_string(4000 + (arg % 8) * 1000, 'm');
        msg_set(m, "error", fmt("{\"code\":\"e\",\"message\":%s}", str));
        free(str);
        break;
    }
    default:
        *post = (int)(kind % 16);
        break;
    }
}

/* The text mutations: cut, wrapped in an array or a string, something
 * around it, a number written as a real. Takes text; returns the new one. */
static char *post_mutate(char *text, size_t *len, int kind, unsigned arg)
{
    char *s;
    switch (kind) {
    case POST_TRUNCATE:
        if (*len > 0)
            *len = arg % *len;
        text[*len] = '\0';
        return text;
    case POST_WRAP:
        s = arg & 1 ? fmt("[%s]", text) : fmt("\"%s\"", text);
        break;
    case POST_AROUND: {
        /* a BOM before, garbage after, a second object, blank lines, a NUL
         * and more after, a comment before */
        static const char *const before[] = {"\xef\xbb\xbf", "", "", "  \n", "", "//"};
        static const char *const after[] = {"", " garbage", "{}", "\n  ", "", ""};
        size_t b = strlen(before[arg % 6]), a = strlen(after[arg % 6]);
        s = malloc(b + *len + a + 6);
        if (s == NULL)
            abort();
        memcpy(s, before[arg % 6], b);
        memcpy(s + b, text, *len);
        memcpy(s + b + *len, after[arg % 6], a + 1);
        *len = b + *len + a;
        if (arg % 6 == 4) {
            memcpy(s + *len, "\0tail", 6); /* the NUL is part of the message */
            *len += 5;
        }
        free(text);
        return s;
    }
    default: {
        /* "step":0 -> 0.0, 0e0, 0E+0, 0.00001 */
        static const char *const forms[] = {".0", "e0", "E+0", ".00001"};
        char *at = strstr(text, "\"step\":");
        if (at == NULL)
            return text;
        at += 7;
        while (*at == '-' || (*at >= '0' && *at <= '9'))
            at++;
        s = fmt("%.*s%s%s", (int)(at - text), text, forms[arg % 4], at);
        break;
    }
    }
    free(text);
    *len = strlen(s);
    return s;
}

static char *finish(msg *m, const int *post, const unsigned *post_arg, size_t *len)
{
    char *text = msg_text(m, len);
    msg_clear(m);
    for (int i = 0; i < 3; i++)
        if (post[i] != 0)
            text = post_mutate(text, len, post[i], post_arg[i]);
    return text;
}

/* A reply to live step t (to a saga that does not exist when none is
 * live), status op % 3, then mutated as the input says. */
static char *make_reply(reader *r, unsigned op, size_t *len)
{
    msg m = {0};
    live_step none, *ls;
    unsigned t = u8(r), nmut = (op / 4) % 8;
    int post[3] = {0, 0, 0};
    unsigned post_arg[3] = {0, 0, 0};
    static const char *const statuses[] = {"ok", "failed", "retry"};
    char cid[128];

    if (G.nlive > 0) {
        ls = &G.live[t % (unsigned)G.nlive];
    } else {
        snprintf(none.saga_id, sizeof none.saga_id, "00000000-0000-4000-8000-%012x", t);
        none.step = 0;
        none.attempts = 1;
        none.phase = SAGA_PHASE_INVOKE;
        ls = &none;
    }
    saga_command_id_format(cid, sizeof cid, ls->saga_id, ls->step, ls->phase);
    msg_add(&m, "v", fmt("1"));
    msg_add(&m, "saga_id", quoted(ls->saga_id));
    msg_add(&m, "step", fmt("%d", ls->step));
    msg_add(&m, "phase", quoted(saga_phase_name(ls->phase)));
    msg_add(&m, "command_id", quoted(cid));
    msg_add(&m, "attempt", fmt("%d", ls->attempts > 0 ? ls->attempts : 1));
    msg_add(&m, "status", quoted(statuses[op % 3]));
    if (op % 3 == 0)
        msg_add(&m, "output", fmt("{\"id\":\"o%u\",\"n\":%u}", t, op));
    else
        msg_add(&m, "error", fmt("{\"code\":\"c%u\",\"message\":\"m\"}", t));
    if (op % 3 == 2 && (t & 1))
        msg_add(&m, "retry_after", fmt("%u", (t * 7) % 400));
    for (unsigned i = 0; nmut >= 5 && i < nmut - 4; i++) {
        unsigned kind = u8(r), arg = u16(r);
        switch (kind % 24) {
        case 16: /* upper-case saga id: the same saga */
        {
            field *id = msg_get(&m, "saga_id");
            for (char *c = id != NULL ? id->val : NULL; c != NULL && *c; c++)
                if (*c >= 'a' && *c <= 'f')
                    *c = (char)(*c - 'a' + 'A');
            continue;
        }
        case 17: /* a saga that does not exist */
            msg_set(&m, "saga_id", fmt("\"%08x-0000-4000-8000-%012x\"", arg, kind));
            continue;
        case 18: /* another attempt: stale or not sent yet */
        {
            int a = ls->attempts + (arg & 1 ? 1 : -1);
            msg_set(&m, "attempt", fmt("%d", a > 0 ? a : 2));
            continue;
        }
        case 19: /* the other phase */
            msg_set(&m, "phase",
                    quoted(ls->phase == SAGA_PHASE_INVOKE ? "compensate" : "invoke"));
            continue;
        case 20: /* another step, in range */
            msg_set(&m, "step", fmt("%u", arg % 6));
            continue;
        case 21: /* retry_after over 30 days, or 10^16 */
            msg_set(&m, "retry_after",
                    fmt("%s", arg & 1 ? "10000000000000000" : "2592000001"));
            continue;
        case 22: /* another command id */
            msg_set(&m, "command_id", quoted(arg & 1 ? "x/0/invoke" : ""));
            continue;
        case 23: /* a 5,000-character saga id */
            msg_set(&m, "saga_id", long_string(5000, 'f'));
            continue;
        default:
            break;
        }
        mutate(&m, kind, arg, reply_fields, 10, &post[i]);
        post_arg[i] = arg;
    }
    return finish(&m, post, post_arg, len);
}

static char *raw(reader *r, size_t *len)
{
    size_t n = u16(r) % (RAW_MAX + 1);
    char *s;
    if (n > r->n)
        n = r->n;
    s = malloc(n + 1);
    if (s == NULL)
        abort();
    if (n > 0)
        memcpy(s, r->p, n);
    s[n] = '\0';
    r->p += n;
    r->n -= n;
    *len = n;
    return s;
}

/* ---- the engine's side ---- */

static void load_live(void)
{
    PGresult *r = q("SELECT st.saga_id, st.idx, st.attempts, st.status = 'compensating'"
                    " FROM saga.saga_step st JOIN saga.saga s ON s.id = st.saga_id"
                    " WHERE st.awaiting AND s.status IN ('running', 'compensating')"
                    " ORDER BY s.created_at, st.saga_id, st.idx LIMIT 256",
                    0, NULL);
    G.nlive = PQntuples(r);
    for (int i = 0; i < G.nlive; i++) {
        live_step *l = &G.live[i];
        snprintf(l->saga_id, sizeof l->saga_id, "%s", PQgetvalue(r, i, 0));
        l->step = atoi(PQgetvalue(r, i, 1));
        l->attempts = atoi(PQgetvalue(r, i, 2));
        l->phase =
            PQgetvalue(r, i, 3)[0] == 't' ? SAGA_PHASE_COMPENSATE : SAGA_PHASE_INVOKE;
    }
    PQclear(r);
    G.running = q_int(
        "SELECT count(*) FROM saga.saga WHERE status IN ('running', 'compensating')", 0,
        NULL);
}

/* The connection named app is not inside a transaction. */
static void check_idle(const char *app, const char *who)
{
    const char *p[1] = {app};
    PGresult *r =
        q("SELECT state FROM pg_stat_activity WHERE application_name = $1", 1, p);
    for (int i = 0; i < PQntuples(r); i++)
        if (strncmp(PQgetvalue(r, i, 0), "idle in transaction", 19) == 0) {
            char state[64];
            snprintf(state, sizeof state, "%s", PQgetvalue(r, i, 0));
            PQclear(r);
            die("%s's connection is \"%s\"", who, state);
        }
    PQclear(r);
}

static void feed_engine(void)
{
    saga_engine_stats a, b;
    int64_t first = G.next_offset;
    int malformed = 0, rc;
    uint64_t counted;
    long long rows = 0, good_rows = 0;
    char lo[24], hi[24];
    const char *p[3] = {G.reply_topic, lo, hi};
    unsigned char bad[MAX_REPLIES] = {0};

    for (int i = 0; i < G.nmsgs; i++) {
        saga_reply rep;
        if (saga_reply_decode(G.msgs[i], G.lens[i], &rep, NULL) != SAGA_OK) {
            malformed++;
            bad[i] = 1;
        }
        saga_reply_clear(&rep);
    }
    G.next_offset += G.nmsgs;
    saga_engine_get_stats(G.engine, &a);
    rc = saga__engine_feed_replies(G.engine, (const char *const *)G.msgs, G.lens, G.nmsgs,
                                   first);
    saga_engine_get_stats(G.engine, &b);
    if (rc != SAGA_OK)
        die("saga__engine_feed_replies returned %d (%s): the batch would be consumed "
            "again",
            rc, saga_strerror(rc));
    counted = (b.replies_applied - a.replies_applied) +
              (b.replies_ignored - a.replies_ignored) +
              (b.replies_rejected - a.replies_rejected) + (b.malformed - a.malformed);
    if (counted != (uint64_t)G.nmsgs)
        die("%d messages fed, %llu counted (applied %llu, ignored %llu, rejected %llu, "
            "malformed %llu; dead letters %llu)",
            G.nmsgs, (unsigned long long)counted,
            (unsigned long long)(b.replies_applied - a.replies_applied),
            (unsigned long long)(b.replies_ignored - a.replies_ignored),
            (unsigned long long)(b.replies_rejected - a.replies_rejected),
            (unsigned long long)(b.malformed - a.malformed),
            (unsigned long long)(b.dead_letters - a.dead_letters));
    if (b.malformed - a.malformed != (uint64_t)malformed)
        die("%d messages do not decode, the engine counted %llu malformed", malformed,
            (unsigned long long)(b.malformed - a.malformed));
    if (b.timers_fired != a.timers_fired || b.commands_refused != a.commands_refused)
        die("feeding replies fired timers or refused commands");
    snprintf(lo, sizeof lo, "%lld", (long long)first);
    snprintf(hi, sizeof hi, "%lld", (long long)(first + G.nmsgs - 1));
    {
        PGresult *r = q("SELECT kafka_offset, reason <> '' AND kafka_partition = 0"
                        " AND source = 'reply' FROM saga.dead_letter WHERE topic = $1"
                        " AND kafka_offset BETWEEN $2 AND $3",
                        3, p);
        rows = PQntuples(r);
        for (int i = 0; i < PQntuples(r); i++) {
            long long off = strtoll(PQgetvalue(r, i, 0), NULL, 10);
            if (PQgetvalue(r, i, 1)[0] == 't')
                good_rows++;
            if (off >= first && off < first + G.nmsgs)
                bad[off - first] = 0;
        }
        PQclear(r);
    }
    if ((uint64_t)rows != b.dead_letters - a.dead_letters)
        die("%llu dead letters counted, %lld rows written at offsets %s..%s",
            (unsigned long long)(b.dead_letters - a.dead_letters), rows, lo, hi);
    if (good_rows != rows)
        die("%lld of %lld dead letters without a reason, or not source reply at "
            "partition 0",
            rows - good_rows, rows);
    for (int i = 0; i < G.nmsgs; i++)
        if (bad[i])
            die("reply %d (offset %lld) does not decode and has no dead letter", i,
                (long long)(first + i));
    check_idle(G.engine_app, "sagad");
}

/* ---- the participants' side ---- */

static char *make_command(reader *r, unsigned op, part **which, size_t *len)
{
    msg m = {0};
    unsigned sel = u8(r), step = u8(r) % 4, outcome = u8(r), nmut = (op / 8) % 8;
    static const char *const outcomes[] = {"ok",  "ok",     "ok",    "fail",  "retry",
                                           "big", "sqlerr", "nores", "twice", "ok"};
    part *pt = &G.parts[op & 1];
    saga_phase phase = (op & 2) ? SAGA_PHASE_COMPENSATE : SAGA_PHASE_INVOKE;
    char id[SAGA_ID_LEN + 1], cid[128];
    int post[3] = {0, 0, 0};
    unsigned post_arg[3] = {0, 0, 0};

    if (sel < 160)
        snprintf(id, sizeof id, "f0000000-0000-4000-8000-%012x", sel % POOL);
    else
        snprintf(id, sizeof id, "f1%06x-%04x-4000-8000-%012llx",
                 (unsigned)getpid() & 0xffffff, sel, (unsigned long long)G.fresh_ids++);
    saga_command_id_format(cid, sizeof cid, id, (int)step, phase);
    msg_add(&m, "v", fmt("1"));
    msg_add(&m, "saga_id", quoted(id));
    msg_add(&m, "saga", quoted("fz_seq"));
    msg_add(&m, "saga_version", fmt("1"));
    msg_add(&m, "step", fmt("%u", step));
    msg_add(&m, "step_name", fmt("\"s%u\"", step));
    msg_add(&m, "phase", quoted(saga_phase_name(phase)));
    msg_add(&m, "action", quoted(phase == SAGA_PHASE_INVOKE ? "act" : "undo"));
    msg_add(&m, "command_id", quoted(cid));
    msg_add(&m, "attempt", fmt("%u", 1 + outcome / 64));
    msg_add(&m, "deadline", fmt("%lld", (long long)time(NULL) * 1000 + 10000));
    msg_add(&m, "reply_to", quoted(op & 4 ? pt->own_reply : G.reply_topic));
    msg_add(&m, "payload",
            fmt("{\"outcome\":\"%s\",\"n\":%u}", outcomes[outcome % 10], sel));
    for (unsigned i = 0; nmut >= 5 && i < nmut - 4; i++) {
        unsigned kind = u8(r), arg = u16(r);
        switch (kind % 24) {
        case 16: /* a reply topic that is not ours, or no topic at all */
        {
            static const char *const topics[] = {
                "\"bad topic!\"", "\"other.topic\"", "\".\"", "\"..\"",
                "\"\"",           "\"saga.reply\"",  "\"x\""};
            if (arg % 8 == 7)
                msg_set(&m, "reply_to", long_string(250 + arg % 60, 't'));
            else
                msg_set(&m, "reply_to", fmt("%s", topics[arg % 8]));
            continue;
        }
        case 17: /* the other participant's reply topic */
            msg_set(&m, "reply_to", quoted(G.parts[!(op & 1)].own_reply));
            continue;
        case 18: /* an action nobody handles here */
            msg_set(&m, "action", quoted(arg & 1 ? "nope" : "undo"));
            continue;
        case 19: /* a payload that is not an object, or odd */
            msg_set(&m, "payload", fmt("%s", odd_values[arg % NVAL]));
            continue;
        case 20: /* the other phase, everything else the same */
            msg_set(&m, "phase",
                    quoted(phase == SAGA_PHASE_INVOKE ? "compensate" : "invoke"));
            continue;
        case 21: /* a deadline past year 9999 */
            msg_set(&m, "deadline", fmt("253402300800000"));
            continue;
        case 22: /* a step far away */
            msg_set(&m, "step", fmt("%u", 9999 - arg % 3));
            continue;
        case 23: /* a 5,000-character saga id */
            msg_set(&m, "saga_id", long_string(5000, 'f'));
            continue;
        default:
            break;
        }
        /* the output and error mutations do not apply: retype a field */
        if (kind % 16 == 3 || kind % 16 == 4 || kind % 16 == 9 || kind % 16 == 10 ||
            kind % 16 == 11)
            kind = 1;
        mutate(&m, kind, arg, command_fields, 13, &post[i]);
        post_arg[i] = arg;
    }
    *which = pt;
    return finish(&m, post, post_arg, len);
}

/* Must pt refuse text (the decoder, or the reply_to rule)? */
static int refused(const part *pt, const char *text, size_t len)
{
    saga_command c;
    int bad = saga_command_decode(text, len, &c, NULL) != SAGA_OK;
    if (!bad)
        bad = strcmp(c.reply_to, G.reply_topic) != 0 &&
              strcmp(c.reply_to, pt->own_reply) != 0;
    saga_command_clear(&c);
    return bad;
}

static void feed_participant(part *pt, const char *text, size_t len)
{
    saga_participant_stats a, b;
    saga_error err = {0};
    int bad = refused(pt, text, len), rc;
    G.pcmd = text;
    G.pcmd_len = len;
    saga_participant_get_stats(pt->p, &a);
    rc = saga__participant_feed(pt->p, text, len, G.next_offset++, &err);
    saga_participant_get_stats(pt->p, &b);
    if (rc != SAGA_OK)
        die("saga__participant_feed (%s) returned %d: %s", pt->service, rc, err.message);
    if (b.received - a.received != 1)
        die("%s: received grew by %llu", pt->service,
            (unsigned long long)(b.received - a.received));
    if (bad && (b.malformed - a.malformed != 1 ||
                b.dead_lettered - a.dead_lettered != 1 || b.handled != a.handled))
        die("%s: a command it must refuse: malformed +%llu, dead-lettered +%llu, "
            "handled +%llu",
            pt->service, (unsigned long long)(b.malformed - a.malformed),
            (unsigned long long)(b.dead_lettered - a.dead_lettered),
            (unsigned long long)(b.handled - a.handled));
    if (!bad && (b.handled - a.handled != 1 || b.dead_lettered != a.dead_lettered))
        die("%s: a valid command: handled +%llu, dead-lettered +%llu", pt->service,
            (unsigned long long)(b.handled - a.handled),
            (unsigned long long)(b.dead_lettered - a.dead_lettered));
    check_idle(pt->app, pt->service);
    G.pcmd = NULL;
}

/* The handler's rows and the barrier's agree, in pt's schema. */
static void check_barrier(const part *pt)
{
    char sql[1600];
    PGresult *r;
    const char *s = pt->service;
    snprintf(sql, sizeof sql,
             "SELECT"
             " (SELECT count(*) FROM %s.effects e WHERE NOT EXISTS (SELECT 1 FROM"
             "  %s.saga_barrier b WHERE b.saga_id = e.saga_id AND b.step = e.step AND"
             "  b.phase = e.phase AND b.outcome = 'handled'"
             "  AND b.reply->>'status' = 'ok')),"
             " (SELECT count(*) FROM %s.saga_barrier b WHERE b.outcome = 'handled'"
             "  AND b.reply->>'status' = 'ok' AND NOT EXISTS (SELECT 1 FROM %s.effects"
             "  e WHERE b.saga_id = e.saga_id AND b.step = e.step AND b.phase ="
             "  e.phase)),"
             " (SELECT count(*) FROM (SELECT 1 FROM %s.effects GROUP BY saga_id, step,"
             "  phase HAVING count(*) > 1) d),"
             " (SELECT count(*) FROM %s.saga_barrier WHERE reply IS NULL AND outcome"
             "  <> 'blocked')",
             s, s, s, s, s, s);
    r = q(sql, 0, NULL);
    if (strcmp(PQgetvalue(r, 0, 0), "0") != 0 || strcmp(PQgetvalue(r, 0, 1), "0") != 0 ||
        strcmp(PQgetvalue(r, 0, 2), "0") != 0 || strcmp(PQgetvalue(r, 0, 3), "0") != 0) {
        char msg[400];
        snprintf(msg, sizeof msg,
                 "%s: %s effect rows without an ok barrier row, %s ok barrier rows "
                 "without an effect, %s commands with two effects, %s barrier rows "
                 "without a reply",
                 s, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2),
                 PQgetvalue(r, 0, 3));
        PQclear(r);
        die("%s", msg);
    }
    PQclear(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = {data, size};
    unsigned h = u8(&r);
    int nrep = 1 + (int)(h % 16), ncmd = (int)(h / 16 % 4);

    G.inputs++;
    load_live();
    if (G.nlive < LIVE_LOW && G.running < RUNNING_MAX) {
        start_sagas(START_EACH);
        turn();
        load_live();
    }
    G.nmsgs = 0;
    for (int i = 0; i < nrep; i++) {
        unsigned op = u8(&r);
        size_t len = 0;
        char *text;
        if (op >= 24 && op < 32 && i > 0) {
            /* the one before again, bytes (NULs and all) as they were */
            len = G.lens[i - 1];
            text = malloc(len + 1);
            if (text == NULL)
                abort();
            memcpy(text, G.msgs[i - 1], len + 1);
        } else if (op < 32) {
            text = raw(&r, &len);
        } else {
            text = make_reply(&r, op, &len);
        }
        G.msgs[i] = text;
        G.lens[i] = len;
        G.nmsgs++;
    }
    feed_engine();
    turn();
    for (int i = 0; i < ncmd; i++) {
        unsigned op = u8(&r);
        part *pt = &G.parts[op & 1];
        size_t len = 0;
        char *text = op < 24 ? raw(&r, &len) : make_command(&r, op, &pt, &len);
        feed_participant(pt, text, len);
        free(text);
    }
    if (ncmd > 0)
        for (int i = 0; i < 2; i++)
            check_barrier(&G.parts[i]);
    for (int i = 0; i < G.nmsgs; i++)
        free(G.msgs[i]);
    G.nmsgs = 0;
    return 0;
}
