/* The example services' shared main (see example_common.h). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "example_common.h"

static saga_participant *running;

static void on_signal(int sig)
{
    (void)sig;
    saga_participant_stop(running);
}

static void usage(const example_service *svc, FILE *out)
{
    char program[64];
    if (svc->program != NULL)
        snprintf(program, sizeof program, "%s", svc->program);
    else
        snprintf(program, sizeof program, "%s-service", svc->service);
    fprintf(out,
            "usage: %s [--brokers B] [--db URL] [--prefix P]\n"
            "The example '%s' participant (docs/EXAMPLES.md).\n\n"
            "  --brokers B   Kafka bootstrap servers (default $SAGA_KAFKA_BROKERS)\n"
            "  --db URL      PostgreSQL (default $SAGA_PG_URL); tables in schema \"%s\"\n"
            "  --prefix P    topic prefix (default $SAGA_TOPIC_PREFIX, else saga.)\n"
            "Also: $SAGA_KAFKA_OPTIONS_FILE (librdkafka settings, one key=value a\n"
            "line: TLS, SASL), $SAGA_KEY_FILE (the service's signing keys), and\n"
            "libpq's own $PGPASSFILE / ~/.pgpass for the database password.\n",
            program, svc->service, svc->schema);
}

/* Server NOTICEs ("already exists, skipping") are not for the user. */
static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static int create_schema(const example_service *svc, const char *url)
{
    PGconn *db = PQconnectdb(url);
    char sql[256];
    PGresult *r;
    int ok;

    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "%s-service: cannot connect to PostgreSQL: %s", svc->service,
                PQerrorMessage(db));
        PQfinish(db);
        return -1;
    }
    PQsetNoticeProcessor(db, ignore_notice, NULL);
    snprintf(sql, sizeof sql, "CREATE SCHEMA IF NOT EXISTS %s; SET search_path TO %s;",
             svc->schema, svc->schema);
    r = PQexec(db, sql);
    ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (ok) {
        /* Every service logs the commands it applied, in the same
         * transaction as their effect (see example_log_command). */
        r = PQexec(db,
                   "CREATE TABLE IF NOT EXISTS command_log ("
                   " id bigserial PRIMARY KEY, saga_id uuid NOT NULL, step int NOT NULL,"
                   " phase text NOT NULL, action text NOT NULL, attempt int NOT NULL,"
                   " received_at timestamptz NOT NULL DEFAULT clock_timestamp());"
                   /* The trace the command came in (its traceparent header). */
                   "ALTER TABLE command_log ADD COLUMN IF NOT EXISTS trace_id text;"
                   "ALTER TABLE command_log ADD COLUMN IF NOT EXISTS span_id text");
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
    }
    if (ok) {
        r = PQexec(db, svc->schema_sql);
        ok =
            PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
    }
    if (!ok)
        fprintf(stderr, "%s-service: creating schema %s: %s", svc->service, svc->schema,
                PQerrorMessage(db));
    PQfinish(db);
    return ok ? 0 : -1;
}

/* With SAGA_EXAMPLE_LOG_HANDLERS=1, every handler runs between a "handler
 * begin" and a "handler end" line, so a process killed in the middle of one
 * leaves a begin without its end (the crash test checks it did kill a
 * handler); off by default, since that is two lines per command. Not the "<phase>
 * <action> saga=... trace_id=..." line of example_log_command: scripts count that one per
 * command. */
/* libsaga never prints: its problems (a malformed command dead-lettered, a
 * reply not delivered, an output over the limit) come here. */
static void print_problem(saga_participant_log_level level, const char *message,
                          void *arg)
{
    const example_service *svc = arg;
    fprintf(stderr, "%s-service: %s: %s\n", svc->service,
            level == SAGA_PARTICIPANT_LOG_ERROR ? "error" : "warning", message);
}

static void traced_handler(const saga_command *cmd, PGconn *db, saga_result *result,
                           void *arg)
{
    const example_handler *h = arg;
    fprintf(stderr, "handler begin %s %s saga=%s step=%d attempt=%d\n",
            saga_phase_name(cmd->phase), cmd->action, cmd->saga_id, cmd->step,
            cmd->attempt);
    h->fn(cmd, db, result, h->arg);
    fprintf(stderr, "handler end %s %s saga=%s step=%d attempt=%d\n",
            saga_phase_name(cmd->phase), cmd->action, cmd->saga_id, cmd->step,
            cmd->attempt);
}

int example_main(const example_service *svc, int argc, char **argv)
{
    static const struct option opts[] = {{"brokers", required_argument, 0, 'b'},
                                         {"db", required_argument, 0, 'd'},
                                         {"prefix", required_argument, 0, 'p'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    saga_participant_options o = {0};
    saga_participant_stats st;
    saga_error err = {0};
    int c, rc, log_handlers;

    o.brokers = getenv("SAGA_KAFKA_BROKERS");
    o.db_url = getenv("SAGA_PG_URL");
    o.topic_prefix = getenv("SAGA_TOPIC_PREFIX");
    o.instance_id = getenv("SAGA_INSTANCE_ID");
    /* Its consumer group (default saga-svc-<service>): sagas spread over
     * several databases give each one's participants their own. */
    o.group_id = getenv("SAGA_PARTICIPANT_GROUP");
    if (o.group_id != NULL && o.group_id[0] == '\0')
        o.group_id = NULL;
    o.kafka_options = getenv("SAGA_KAFKA_OPTIONS");
    o.kafka_options_file = getenv("SAGA_KAFKA_OPTIONS_FILE");
    o.key_file = getenv("SAGA_KEY_FILE");
    o.service = svc->service;
    o.db_schema = svc->schema;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            o.brokers = optarg;
            break;
        case 'd':
            o.db_url = optarg;
            break;
        case 'p':
            o.topic_prefix = optarg;
            break;
        case 'h':
            usage(svc, stdout);
            return 0;
        default:
            usage(svc, stderr);
            return 2;
        }
    }
    if (optind < argc || o.brokers == NULL || o.db_url == NULL) {
        if (optind < argc)
            fprintf(stderr, "%s-service: unexpected argument \"%s\"\n", svc->service,
                    argv[optind]);
        else
            fprintf(stderr,
                    "%s-service: set --brokers and --db (or SAGA_KAFKA_BROKERS and "
                    "SAGA_PG_URL)\n",
                    svc->service);
        return 2;
    }
    srand((unsigned)getpid());
    if (create_schema(svc, o.db_url) != 0)
        return 1;
    if ((rc = saga_participant_new(&o, &running, &err)) != SAGA_OK) {
        fprintf(stderr, "%s-service: %s\n", svc->service, err.message);
        return 1;
    }
    saga_participant_set_logger(running, print_problem, (void *)svc);
    log_handlers = getenv("SAGA_EXAMPLE_LOG_HANDLERS") != NULL &&
                   strcmp(getenv("SAGA_EXAMPLE_LOG_HANDLERS"), "1") == 0;
    for (int i = 0; i < svc->nhandlers; i++)
        saga_participant_on(running, svc->handlers[i].phase, svc->handlers[i].name,
                            log_handlers ? traced_handler : svc->handlers[i].fn,
                            log_handlers ? (void *)&svc->handlers[i]
                                         : svc->handlers[i].arg);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    fprintf(stderr, "%s-service: ready\n", svc->service);
    rc = saga_participant_run(running, &err);
    saga_participant_get_stats(running, &st);
    fprintf(
        stderr,
        "%s-service: stopped: %llu handled, %llu duplicates, %llu null compensations, "
        "%llu hanging refused, %llu malformed, %llu unknown actions, %llu dead-lettered, "
        "%llu replies not delivered, %llu outputs too large\n",
        svc->service, (unsigned long long)st.handled, (unsigned long long)st.duplicates,
        (unsigned long long)st.null_compensations, (unsigned long long)st.hanging_refused,
        (unsigned long long)st.malformed, (unsigned long long)st.unknown_action,
        (unsigned long long)st.dead_lettered, (unsigned long long)st.undeliverable,
        (unsigned long long)st.output_too_large);
    saga_participant_free(running);
    if (rc != SAGA_OK) {
        fprintf(stderr, "%s-service: %s\n", svc->service, err.message);
        return 1;
    }
    return 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int example_fault(saga_result *result)
{
    const char *delay = getenv("SAGA_EXAMPLE_DELAY_MS");
    const char *rate = getenv("SAGA_EXAMPLE_FAIL_RATE");
    const char *slow_rate = getenv("SAGA_EXAMPLE_SLOW_RATE");
    const char *slow_ms = getenv("SAGA_EXAMPLE_SLOW_MS");
    if (delay != NULL && atoi(delay) > 0)
        sleep_ms(atoi(delay));
    /* Now and then take longer than the step's timeout: sagad re-sends. */
    if (slow_rate != NULL && slow_ms != NULL &&
        (double)rand() / RAND_MAX < atof(slow_rate))
        sleep_ms(atoi(slow_ms));
    if (rate != NULL && (double)rand() / RAND_MAX < atof(rate)) {
        saga_result_retry(result, 0,
                          "injected transient failure (SAGA_EXAMPLE_FAIL_RATE)");
        return 1;
    }
    return 0;
}

PGresult *example_sql(PGconn *db, saga_result *result, const char *sql, int n,
                      const char *const *params)
{
    PGresult *r = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        saga_result_retry(result, 500, "database: %s", PQerrorMessage(db));
        PQclear(r);
        return NULL;
    }
    return r;
}

static int example_log_command(PGconn *db, const saga_command *cmd, saga_result *result)
{
    char step[16], attempt[16], trace_id[SAGA_TRACE_ID_HEX_SIZE] = "",
                                span_id[SAGA_SPAN_ID_HEX_SIZE] = "";
    saga_trace_context tc;
    const char *p[7] = {cmd->saga_id, step,    saga_phase_name(cmd->phase),
                        cmd->action,  attempt, trace_id,
                        span_id};
    PGresult *r;
    snprintf(step, sizeof step, "%d", cmd->step);
    snprintf(attempt, sizeof attempt, "%d", cmd->attempt);
    if (saga_command_trace(cmd, &tc) == SAGA_OK) {
        saga_trace_id_hex(&tc, trace_id);
        saga_span_id_hex(&tc, span_id);
    }
    /* One line per command, with the saga's trace id: grep every
     * service's log for it to follow a saga across services. */
    fprintf(stderr, "%s %s saga=%s step=%s attempt=%s trace_id=%s span_id=%s\n",
            saga_phase_name(cmd->phase), cmd->action, cmd->saga_id, cmd->step_name,
            attempt, trace_id[0] ? trace_id : "-", span_id[0] ? span_id : "-");
    if (trace_id[0] == '\0')
        p[5] = p[6] = NULL;
    /* A failed INSERT aborts the transaction: report it here, with its own
     * message, rather than let the handler's next statement fail with a
     * misleading "current transaction is aborted". */
    r = example_sql(db, result,
                    "INSERT INTO command_log (saga_id, step, phase, action, attempt,"
                    " trace_id, span_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    7, p);
    if (r == NULL)
        return -1;
    PQclear(r);
    return 0;
}

const char *example_str(const saga_command *cmd, json_t *obj, const char *key,
                        saga_result *result)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v) || json_string_length(v) == 0) {
        saga_result_fail(result, "bad_input", "%s: \"%s\" must be a non-empty string",
                         cmd->action, key);
        return NULL;
    }
    return json_string_value(v);
}

long long example_int(const saga_command *cmd, json_t *obj, const char *key,
                      saga_result *result, int *ok)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) <= 0) {
        saga_result_fail(result, "bad_input", "%s: \"%s\" must be a positive integer",
                         cmd->action, key);
        *ok = 0;
        return 0;
    }
    return (long long)json_integer_value(v);
}

int example_begin(const saga_command *cmd, PGconn *db, saga_result *result)
{
    return example_fault(result) || example_log_command(db, cmd, result) != 0;
}

void example_undo(const saga_command *cmd, PGconn *db, saga_result *result,
                  const char *sql, const char *key)
{
    const char *p[1] = {cmd->saga_id};
    PGresult *r;

    if (example_begin(cmd, db, result))
        return;
    if ((r = example_sql(db, result, sql, 1, p)) == NULL)
        return;
    saga_result_ok(
        result, json_pack("{s:I}", key,
                          (json_int_t)(PQntuples(r) ? atoll(PQgetvalue(r, 0, 0)) : 0)));
    PQclear(r);
}
