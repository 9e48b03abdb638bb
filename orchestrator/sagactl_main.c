/* sagactl: the operator's command line. Exit codes: 0 ok, 1 not found or
 * refused, 2 usage, 3 cannot reach the database (or schema not migrated). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <uuid.h>

#include "saga/saga.h"
#include "saga_definition.h"
#include "saga_duration.h"
#include "saga_machine.h"
#include "saga_migrate.h"
#include "saga_store.h"
#include "saga_tracing.h"
#include "sagactl.h"

const char *db_url;
int want_json;

void die_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "sagactl: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'sagactl --help'.\n");
    exit(EXIT_USAGE);
}

/* Server NOTICEs ("already exists, skipping") are not for the user. */
static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

PGconn *connect_db(int need_schema)
{
    PGconn *db;
    if (db_url == NULL) {
        fprintf(stderr, "sagactl: no database: pass --db URL or set SAGA_PG_URL\n");
        exit(EXIT_USAGE);
    }
    db = PQconnectdb(db_url);
    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "sagactl: cannot reach the database: %s", PQerrorMessage(db));
        PQfinish(db);
        exit(EXIT_DB);
    }
    PQsetNoticeProcessor(db, ignore_notice, NULL);
    if (need_schema) {
        int v = 0;
        saga_error err = {0};
        if (saga_migrate_current(db, &v, &err) != SAGA_OK || v < SAGA_SCHEMA_VERSION) {
            fprintf(
                stderr,
                "sagactl: the database is not migrated (schema version %d, need %d): run "
                "`sagactl migrate`\n",
                v, SAGA_SCHEMA_VERSION);
            PQfinish(db);
            exit(EXIT_DB);
        }
    }
    return db;
}

/* Run a query that returns one JSON text (or no row); NULL if no row. */
json_t *query_json(PGconn *db, const char *sql, int n, const char *const *params)
{
    PGresult *r = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
    json_t *j = NULL;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "sagactl: query failed: %s", PQerrorMessage(db));
        PQclear(r);
        PQfinish(db);
        exit(EXIT_DB);
    }
    if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        j = json_loads(PQgetvalue(r, 0, 0), JSON_DECODE_ANY, NULL);
    PQclear(r);
    return j;
}

void print_json(json_t *j)
{
    char *t = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    puts(t ? t : "null");
    free(t);
}

const char *str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "-";
}

int check_uuid(const char *id)
{
    uuid_t u;
    if (uuid_parse(id, u) != 0)
        die_usage("\"%s\" is not a saga id (expected a UUID)", id);
    return 0;
}

static int use_color(void)
{
    static int cached = -1;
    if (cached < 0)
        cached = isatty(STDOUT_FILENO) && getenv("NO_COLOR") == NULL;
    return cached;
}

const char *color_for_status(const char *status)
{
    if (!use_color())
        return "";
    if (strcmp(status, "completed") == 0)
        return "\033[32m";
    if (strcmp(status, "compensated") == 0 || strcmp(status, "resolved") == 0)
        return "\033[33m";
    if (strcmp(status, "failed") == 0)
        return "\033[1;31m";
    return "\033[36m";
}

const char *color_reset(void)
{
    return use_color() ? "\033[0m" : "";
}

void format_age(double s, char *buf, size_t size)
{
    if (s < 0)
        s = 0;
    if (s < 60)
        snprintf(buf, size, "%.0fs ago", s);
    else if (s < 3600)
        snprintf(buf, size, "%.0fm ago", s / 60);
    else if (s < 86400)
        snprintf(buf, size, "%.1fh ago", s / 3600);
    else
        snprintf(buf, size, "%.1fd ago", s / 86400);
}

/* ---- migrate ---- */

static void on_migration(const char *file, int applied, void *arg)
{
    (void)arg;
    printf("%s %s\n", applied ? "applied " : "up to date", file);
}

static int cmd_migrate(int argc, char **argv)
{
    const char *dir =
        getenv("SAGA_MIGRATIONS_DIR") ? getenv("SAGA_MIGRATIONS_DIR") : "migrations";
    saga_error err = {0};
    int applied = 0, rc;
    PGconn *db;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else if (strcmp(argv[i], "--help") == 0) {
            printf(
                "usage: sagactl migrate [--dir DIR]\nApplies the pending migrations in "
                "DIR "
                "(default ./migrations or $SAGA_MIGRATIONS_DIR), each once, in order,\n"
                "each in a transaction; refuses when an applied file was changed.\n");
            return EXIT_OK;
        } else
            die_usage("migrate: unexpected argument \"%s\"", argv[i]);
    }
    db = connect_db(0);
    rc = saga_migrate(db, dir, &applied, on_migration, NULL, &err);
    PQfinish(db);
    if (rc != SAGA_OK) {
        fprintf(stderr, "sagactl migrate: %s\n", err.message);
        return rc == SAGA_EDB ? EXIT_DB : EXIT_REFUSED;
    }
    printf("%d migration(s) applied\n", applied);
    return EXIT_OK;
}

/* ---- start ---- */

static int cmd_start(int argc, char **argv)
{
    const char *name = NULL, *input_text = "{}", *key = NULL, *traceparent = NULL;
    saga_client *client = NULL;
    saga_error err = {0};
    json_error_t jerr;
    json_t *input;
    char id[SAGA_ID_LEN + 1], status[32] = "pending";
    int existed = 0, rc, wait_ms = 10000;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--input") == 0 && i + 1 < argc)
            input_text = argv[++i];
        else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
            key = argv[++i];
        else if (strcmp(argv[i], "--traceparent") == 0 && i + 1 < argc)
            traceparent = argv[++i];
        else if (strcmp(argv[i], "--no-wait") == 0)
            wait_ms = 0;
        else if (strcmp(argv[i], "--help") == 0) {
            printf("usage: sagactl start NAME [--input JSON] [--key IDEMPOTENCY_KEY]\n"
                   "                    [--traceparent TP] [--no-wait]\n"
                   "Asks sagad to start a saga of the latest version of definition NAME "
                   "and prints\nits id once sagad has created it (up to 10 s; "
                   "--no-wait: at once).\n"
                   "With --key, starting twice with the same key gives the same saga.\n"
                   "With --traceparent (W3C), the saga continues that trace.\n");
            return EXIT_OK;
        } else if (argv[i][0] == '-')
            die_usage("start: unknown option \"%s\"", argv[i]);
        else if (name == NULL)
            name = argv[i];
        else
            die_usage("start: unexpected argument \"%s\"", argv[i]);
    }
    if (name == NULL)
        die_usage("start: missing the definition %s", "NAME");
    input = json_loads(input_text, 0, &jerr);
    if (!json_is_object(input))
        die_usage("start: --input must be a JSON object: %s",
                  input ? "found another JSON value" : jerr.text);
    if (db_url == NULL) {
        json_decref(input);
        connect_db(0); /* says what is missing and exits */
    }
    /* Through a start request, as libsaga's client does: sagad creates the
     * saga and sends its first command through its circuit breakers. */
    if ((rc = saga_client_new(db_url, &client, &err)) == SAGA_OK)
        rc = saga_client_start_traced(client, name, input, key, traceparent, id, &existed,
                                      &err);
    json_decref(input);
    if (rc == SAGA_OK && wait_ms > 0) {
        for (int waited = 0; waited < wait_ms; waited += 20) {
            if ((rc = saga_client_status(client, id, status, &err)) != SAGA_OK ||
                strcmp(status, "pending") != 0)
                break;
            usleep(20 * 1000);
        }
        if (rc == SAGA_OK && strcmp(status, "pending") == 0)
            fprintf(stderr,
                    "sagactl start: saga %s requested, not yet created: is sagad "
                    "running?\n",
                    id);
    }
    saga_client_free(client);
    if (rc == SAGA_EINVAL)
        die_usage("start: %s", err.message);
    if (rc != SAGA_OK) {
        fprintf(stderr, "sagactl start: %s\n", err.message);
        return EXIT_DB;
    }
    if (strcmp(status, "rejected") == 0) {
        fprintf(stderr, "sagactl start: %s\n", err.message);
        return EXIT_REFUSED;
    }
    if (existed && !want_json)
        fprintf(stderr, "sagactl start: key \"%s\" already started saga %s\n", key, id);
    if (want_json)
        printf("{\"id\": \"%s\", \"existed\": %s}\n", id, existed ? "true" : "false");
    else
        printf("%s\n", id);
    return EXIT_OK;
}

/* ---- list ---- */

/* $1 status, $2 name, $3 limit, $4 started within ms, $5 started before ms.
 * One index range per status, newest first, each stopping after $3 rows,
 * then merged: (status, created_at) or (name, status, created_at) answers
 * every filter without sorting all matches, however rare the combination. */
static const char list_sql[] =
    "SELECT coalesce(json_agg(x.j ORDER BY x.ts DESC), '[]') FROM ("
    " SELECT json_build_object('id', s.id, 'name', s.name, 'version', s.version,"
    "  'status', s.status, 'step', s.cursor_step, 'step_name', st.name,"
    "  'created_at', saga.iso(s.created_at), 'updated_at', saga.iso(s.updated_at),"
    "  'idle_seconds', round(extract(epoch FROM now() - s.updated_at)::numeric, 3)) AS j,"
    "  s.created_at AS ts"
    " FROM unnest(CASE WHEN $1::text IS NULL THEN ARRAY['running', 'compensating',"
    "   'completed', 'compensated', 'failed', 'resolved'] ELSE ARRAY[$1::text] END) "
    "f(status),"
    " LATERAL (SELECT * FROM saga.saga s WHERE s.status = f.status"
    "  AND ($2::text IS NULL OR s.name = $2)"
    "  AND ($4::bigint IS NULL OR s.created_at >= now() - $4::bigint * interval '1 ms')"
    "  AND ($5::bigint IS NULL OR s.created_at < now() - $5::bigint * interval '1 ms')"
    "  ORDER BY s.created_at DESC LIMIT $3::int) s"
    " LEFT JOIN saga.saga_step st ON st.saga_id = s.id AND st.idx = s.cursor_step"
    " ORDER BY s.created_at DESC LIMIT $3::int) x";

static int cmd_list(int argc, char **argv)
{
    const char *status = NULL, *name = NULL, *limit = "50", *since = NULL, *older = NULL;
    char since_ms[32], older_ms[32];
    const char *p[5];
    json_t *rows, *row;
    size_t i;
    PGconn *db;

    for (int k = 1; k < argc; k++) {
        int64_t ms;
        if (strcmp(argv[k], "--status") == 0 && k + 1 < argc) {
            saga_status st;
            status = argv[++k];
            if (saga_status_parse(status, &st) != 0 || st == SAGA_ST_NEW)
                die_usage(
                    "list: unknown status \"%s\" (running, compensating, completed, "
                    "compensated, failed, resolved)",
                    status);
        } else if (strcmp(argv[k], "--saga") == 0 && k + 1 < argc) {
            name = argv[++k];
        } else if (strcmp(argv[k], "--limit") == 0 && k + 1 < argc) {
            limit = argv[++k];
            if (atoi(limit) <= 0)
                die_usage("list: --limit needs a positive number, not \"%s\"", limit);
        } else if (strcmp(argv[k], "--since") == 0 && k + 1 < argc) {
            if (saga_duration_parse(argv[++k], &ms) != 0)
                die_usage("list: --since needs a duration such as 10m or 2h, not \"%s\"",
                          argv[k]);
            snprintf(since_ms, sizeof since_ms, "%lld", (long long)ms);
            since = since_ms;
        } else if (strcmp(argv[k], "--older-than") == 0 && k + 1 < argc) {
            if (saga_duration_parse(argv[++k], &ms) != 0)
                die_usage(
                    "list: --older-than needs a duration such as 10m or 2h, not \"%s\"",
                    argv[k]);
            snprintf(older_ms, sizeof older_ms, "%lld", (long long)ms);
            older = older_ms;
        } else if (strcmp(argv[k], "--json") == 0) {
            want_json = 1;
        } else if (strcmp(argv[k], "--help") == 0) {
            printf("usage: sagactl list [--status S] [--saga NAME] [--since DUR] "
                   "[--older-than DUR] [--limit N] [--json]\n"
                   "Lists sagas, newest first: --since 1h started in the last hour,\n"
                   "--older-than 10m started more than ten minutes ago.\n");
            return EXIT_OK;
        } else {
            die_usage("list: unexpected argument \"%s\"", argv[k]);
        }
    }
    p[0] = status;
    p[1] = name;
    p[2] = limit;
    p[3] = since;
    p[4] = older;
    db = connect_db(1);
    rows = query_json(db, list_sql, 5, p);
    PQfinish(db);
    if (want_json) {
        print_json(rows);
    } else {
        printf("%-36s  %-16s  %-12s  %-16s  %-10s  %s\n", "ID", "SAGA", "STATUS", "STEP",
               "UPDATED", "");
        json_array_foreach(rows, i, row)
        {
            char saga[64], age[32];
            const char *st = str(row, "status");
            snprintf(saga, sizeof saga, "%s@%lld", str(row, "name"),
                     (long long)json_integer_value(json_object_get(row, "version")));
            format_age(json_number_value(json_object_get(row, "idle_seconds")), age,
                       sizeof age);
            printf("%-36s  %-16s  %s%-12s%s  %-16s  %-10s  %s\n", str(row, "id"), saga,
                   color_for_status(st), st, color_reset(), str(row, "step_name"), age,
                   str(row, "updated_at"));
        }
        if (json_array_size(rows) == 0)
            printf("(no sagas)\n");
    }
    json_decref(rows);
    return EXIT_OK;
}

/* ---- show ---- */

/* A saga with its steps, as one JSON object (NULL row: no such saga). */
static const char show_sql[] =
    "SELECT json_build_object('id', s.id, 'name', s.name, 'version', s.version,"
    " 'status', s.status, 'step', s.cursor_step, 'input', s.input,"
    " 'idempotency_key', s.idempotency_key, 'created_at', saga.iso(s.created_at),"
    " 'updated_at', saga.iso(s.updated_at), 'deadline_at', saga.iso(s.deadline_at),"
    " 'wake_at', saga.iso(s.wake_at), 'traceparent', s.traceparent,"
    " 'trace_id', split_part(s.traceparent, '-', 2),"
    " 'steps', (SELECT coalesce(json_agg(json_build_object("
    "   'index', st.idx, 'name', st.name, 'status', st.status, 'attempts', st.attempts,"
    "   'started_at', saga.iso(st.started_at), 'finished_at', saga.iso(st.finished_at),"
    "   'output', st.output, 'error', st.error) ORDER BY st.idx), '[]')"
    "  FROM saga.saga_step st WHERE st.saga_id = s.id))"
    " FROM saga.saga s WHERE s.id = $1";

static int cmd_show(int argc, char **argv)
{
    const char *id = NULL;
    json_t *saga, *steps, *st;
    size_t i;
    PGconn *db;

    for (int k = 1; k < argc; k++) {
        if (strcmp(argv[k], "--json") == 0)
            want_json = 1;
        else if (strcmp(argv[k], "--help") == 0) {
            printf(
                "usage: sagactl show ID [--json]\nShows a saga: definition and version, "
                "status, input, and each step with status, attempts, times, output or "
                "error.\n");
            return EXIT_OK;
        } else if (id == NULL && argv[k][0] != '-')
            id = argv[k];
        else
            die_usage("show: unexpected argument \"%s\"", argv[k]);
    }
    if (id == NULL)
        die_usage("show: missing the saga %s", "ID");
    check_uuid(id);
    db = connect_db(1);
    {
        const char *p[1] = {id};
        saga = query_json(db, show_sql, 1, p);
    }
    PQfinish(db);
    if (saga == NULL) {
        fprintf(stderr, "sagactl show: no saga %s\n", id);
        return EXIT_REFUSED;
    }
    if (want_json) {
        print_json(saga);
        json_decref(saga);
        return EXIT_OK;
    }
    printf("saga      %s\n", str(saga, "id"));
    printf("name      %s (version %lld)\n", str(saga, "name"),
           (long long)json_integer_value(json_object_get(saga, "version")));
    printf("status    %s\n", str(saga, "status"));
    printf("created   %s\n", str(saga, "created_at"));
    printf("updated   %s\n", str(saga, "updated_at"));
    if (json_string_length(json_object_get(saga, "trace_id")) > 0)
        printf("trace     %s\n", str(saga, "trace_id"));
    {
        char *in = json_dumps(json_object_get(saga, "input"), JSON_COMPACT);
        printf("input     %s\n", in ? in : "{}");
        free(in);
    }
    printf("\n  #  %-16s  %-20s  %3s  %-24s  %-24s  %s\n", "STEP", "STATUS", "TRY",
           "STARTED", "FINISHED", "OUTPUT / ERROR");
    steps = json_object_get(saga, "steps");
    json_array_foreach(steps, i, st)
    {
        json_t *res = json_object_get(st, "error");
        char *t;
        if (json_is_null(res) || res == NULL || !strcmp(str(st, "status"), "succeeded"))
            res = json_object_get(st, "output");
        t = (res && !json_is_null(res)) ? json_dumps(res, JSON_COMPACT) : NULL;
        printf("%3lld  %-16s  %-20s  %3lld  %-24s  %-24s  %s\n",
               (long long)json_integer_value(json_object_get(st, "index")),
               str(st, "name"), str(st, "status"),
               (long long)json_integer_value(json_object_get(st, "attempts")),
               str(st, "started_at"), str(st, "finished_at"), t ? t : "");
        free(t);
    }
    json_decref(saga);
    return EXIT_OK;
}

/* ---- history ---- */

/* Events oldest first, with the time since the previous one. */
static const char history_sql[] =
    "SELECT CASE WHEN EXISTS (SELECT 1 FROM saga.saga WHERE id = $1) THEN"
    " (SELECT coalesce(json_agg(x ORDER BY x.seq), '[]') FROM ("
    "  SELECT e.id AS seq,"
    "   saga.iso(e.at) AS at,"
    "   e.kind, e.step, st.name AS step_name, e.phase, e.attempt, e.detail, e.actor,"
    "   round(extract(epoch from e.at - lag(e.at) OVER (ORDER BY e.id)) * 1000)"
    "    AS since_previous_ms"
    "  FROM saga.saga_event e LEFT JOIN saga.saga_step st"
    "   ON st.saga_id = e.saga_id AND st.idx = e.step"
    "  WHERE e.saga_id = $1) x) END";

/* Each event gets the saga's trace id and, when it concerns a step
 * attempt, the attempt's span id (the one its command carried). */
static void add_spans(json_t *events, const char *saga_tp)
{
    char trace_id[SAGA_TRACE_ID_HEX_SIZE], span_id[SAGA_SPAN_ID_HEX_SIZE];
    size_t i;
    json_t *ev;
    saga_tracing_ids(saga_tp, trace_id, span_id);
    json_array_foreach(events, i, ev)
    {
        json_t *step = json_object_get(ev, "step"),
               *attempt = json_object_get(ev, "attempt");
        char tp[SAGA_TRACEPARENT_LEN + 1] = "", t2[SAGA_TRACE_ID_HEX_SIZE];
        json_object_set_new(ev, "trace_id",
                            trace_id[0] ? json_string(trace_id) : json_null());
        if (json_is_integer(step) && json_is_integer(attempt) &&
            json_integer_value(attempt) > 0)
            saga_tracing_step(saga_tp, (int)json_integer_value(step),
                              strcmp(str(ev, "phase"), "compensate") == 0
                                  ? SAGA_PHASE_COMPENSATE
                                  : SAGA_PHASE_INVOKE,
                              (int)json_integer_value(attempt), tp, sizeof tp);
        saga_tracing_ids(tp, t2, span_id);
        json_object_set_new(ev, "span_id",
                            span_id[0] ? json_string(span_id) : json_null());
    }
}

static int cmd_history(int argc, char **argv)
{
    const char *id = NULL;
    char traceparent[SAGA_TRACEPARENT_LEN + 1] = "";
    json_t *events, *ev;
    size_t i;
    PGconn *db;

    for (int k = 1; k < argc; k++) {
        if (strcmp(argv[k], "--json") == 0)
            want_json = 1;
        else if (strcmp(argv[k], "--help") == 0) {
            printf("usage: sagactl history ID [--json]\nThe saga's timeline: every "
                   "transition "
                   "with time, step, attempt, details and actor.\n");
            return EXIT_OK;
        } else if (id == NULL && argv[k][0] != '-')
            id = argv[k];
        else
            die_usage("history: unexpected argument \"%s\"", argv[k]);
    }
    if (id == NULL)
        die_usage("history: missing the saga %s", "ID");
    check_uuid(id);
    db = connect_db(1);
    {
        const char *p[1] = {id};
        PGresult *r;
        events = query_json(db, history_sql, 1, p);
        r = PQexecParams(db, "SELECT traceparent FROM saga.saga WHERE id = $1", 1, NULL,
                         p, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
            snprintf(traceparent, sizeof traceparent, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    PQfinish(db);
    if (events == NULL) {
        fprintf(stderr, "sagactl history: no saga %s\n", id);
        return EXIT_REFUSED;
    }
    add_spans(events, traceparent);
    if (want_json) {
        print_json(events);
    } else {
        char trace_id[SAGA_TRACE_ID_HEX_SIZE], span_id[SAGA_SPAN_ID_HEX_SIZE];
        saga_tracing_ids(traceparent, trace_id, span_id);
        if (trace_id[0])
            printf("trace %s (saga span %s); SPAN is each attempt's, as its command "
                   "carried it\n",
                   trace_id, span_id);
        json_array_foreach(events, i, ev)
        {
            json_t *d = json_object_get(ev, "detail");
            char *t = (d && !json_is_null(d)) ? json_dumps(d, JSON_COMPACT) : NULL;
            char step[64] = "";
            if (json_is_integer(json_object_get(ev, "attempt")))
                snprintf(step, sizeof step, "%s#%lld", str(ev, "step_name"),
                         (long long)json_integer_value(json_object_get(ev, "attempt")));
            else if (json_is_integer(json_object_get(ev, "step")))
                snprintf(step, sizeof step, "%s", str(ev, "step_name"));
            {
                json_t *prev = json_object_get(ev, "since_previous_ms");
                char delta[32] = "";
                if (json_is_number(prev))
                    snprintf(delta, sizeof delta, "+%.0fms", json_number_value(prev));
                printf("%s  %9s  %-24s  %-20s  %-16s  %-16s  %s\n", str(ev, "at"), delta,
                       str(ev, "kind"), step,
                       json_is_string(json_object_get(ev, "span_id")) ? str(ev, "span_id")
                                                                      : "",
                       str(ev, "actor"), t ? t : "");
            }
            free(t);
        }
    }
    json_decref(events);
    return EXIT_OK;
}

/* ---- wait ---- */

static int cmd_wait(int argc, char **argv)
{
    const char *id = NULL;
    int64_t timeout = 60000, until;
    PGconn *db;

    for (int k = 1; k < argc; k++) {
        if (strcmp(argv[k], "--timeout") == 0 && k + 1 < argc) {
            if (saga_duration_parse(argv[++k], &timeout) != 0)
                die_usage(
                    "wait: --timeout needs a duration such as 30s or 2m, not \"%s\"",
                    argv[k]);
        } else if (strcmp(argv[k], "--json") == 0) {
            want_json = 1;
        } else if (strcmp(argv[k], "--help") == 0) {
            printf("usage: sagactl wait ID [--timeout DUR] [--json]\nWaits until the "
                   "saga is "
                   "completed, "
                   "compensated or failed and prints that status.\nExit 0 when it ended "
                   "completed or compensated, 1 when failed, not found or timed out.\n");
            return EXIT_OK;
        } else if (id == NULL && argv[k][0] != '-') {
            id = argv[k];
        } else {
            die_usage("wait: unexpected argument \"%s\"", argv[k]);
        }
    }
    if (id == NULL)
        die_usage("wait: missing the saga %s", "ID");
    check_uuid(id);
    db = connect_db(1);
    until = saga_now_ms() + timeout;
    for (;;) {
        const char *p[1] = {id};
        PGresult *r = PQexecParams(db, "SELECT status FROM saga.saga WHERE id = $1", 1,
                                   NULL, p, NULL, NULL, 0);
        char status[32] = "";
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            fprintf(stderr, "sagactl wait: %s", PQerrorMessage(db));
            PQclear(r);
            PQfinish(db);
            return EXIT_DB;
        }
        if (PQntuples(r) == 0) {
            PQclear(r);
            PQfinish(db);
            fprintf(stderr, "sagactl wait: no saga %s\n", id);
            return EXIT_REFUSED;
        }
        snprintf(status, sizeof status, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        if (strcmp(status, "completed") == 0 || strcmp(status, "compensated") == 0 ||
            strcmp(status, "failed") == 0 || strcmp(status, "resolved") == 0) {
            PQfinish(db);
            if (want_json)
                printf("{\"id\": \"%s\", \"status\": \"%s\"}\n", id, status);
            else
                printf("%s\n", status);
            return strcmp(status, "failed") == 0 || strcmp(status, "resolved") == 0
                       ? EXIT_REFUSED
                       : EXIT_OK;
        }
        if (saga_now_ms() >= until) {
            PQfinish(db);
            fprintf(stderr, "sagactl wait: saga %s still %s after the timeout\n", id,
                    status);
            return EXIT_REFUSED;
        }
        usleep(100 * 1000);
    }
}

/* ---- validate ---- */

static int cmd_validate(int argc, char **argv)
{
    int bad = 0, files = 0;
    for (int k = 1; k < argc; k++) {
        saga_def_problems probs = {0};
        saga_definition *def = NULL;
        if (strcmp(argv[k], "--help") == 0) {
            printf(
                "usage: sagactl validate FILE...\nChecks saga definitions; prints every "
                "problem with file, place and what is expected.\nExit 0 when all are "
                "valid, 1 otherwise.\n");
            return EXIT_OK;
        }
        files++;
        if (saga_definition_load_file(argv[k], &def, &probs) != SAGA_OK) {
            bad++;
            for (int i = 0; i < probs.count && i < 64; i++)
                fprintf(stderr, "%s: %s: %s\n", argv[k], probs.items[i].where,
                        probs.items[i].message);
            if (probs.count > 64)
                fprintf(stderr, "%s: ... and %d more problems\n", argv[k],
                        probs.count - 64);
        } else {
            printf("%s: ok (saga \"%s\", %d steps)\n", argv[k], def->name, def->nsteps);
            saga_definition_free(def);
        }
    }
    if (files == 0)
        die_usage("validate: no %s given", "FILE");
    return bad ? EXIT_REFUSED : EXIT_OK;
}

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: sagactl [--db URL] [--json] COMMAND [ARGS]\n\n"
        "Finding:\n"
        "  list [--status S] [--saga NAME] [--since DUR] [--older-than DUR] [--limit N]\n"
        "  stuck [--older-than DUR]            sagas that need an operator, with why\n"
        "  stats                               counts by status and definition, rates\n"
        "Understanding:\n"
        "  show ID                             a saga and its steps\n"
        "  history ID                          its timeline, operator actions included\n"
        "  wait ID [--timeout DUR]             wait for it to end, print its status\n"
        "Repairing (--reason TEXT required; --as NAME, else $USER):\n"
        "  retry ID                            re-send the outstanding "
        "step/compensation\n"
        "  compensate ID                       abort a running saga and compensate it\n"
        "  skip ID --step NAME [--output JSON] mark the current step done by hand\n"
        "  resolve ID                          close a failed saga by hand\n"
        "Running:\n"
        "  start NAME [--input JSON] [--key K] start a saga, print its id\n"
        "  migrate [--dir DIR]                 apply pending schema migrations\n"
        "  validate FILE...                    check definition files\n"
        "  defs deploy FILE... | list | show NAME [--version N]   stored definitions\n"
        "Keeping history:\n"
        "  purge --older-than DUR [--status S] [--batch N] [--archive FILE] [--dry-run]\n"
        "                                      delete finished sagas by age\n\n"
        "Options:\n"
        "  --db URL    PostgreSQL (default $SAGA_PG_URL)\n"
        "  --json      machine-readable output (every command that reads)\n"
        "  --help      this text; `sagactl COMMAND --help` for a command\n\n"
        "Exit codes: 0 ok, 1 not found or refused (stuck: some found), 2 usage,\n"
        "3 database unreachable or not migrated.\n");
}

int main(int argc, char **argv)
{
    int i = 1;
    db_url = getenv("SAGA_PG_URL");
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--db") == 0 && i + 1 < argc)
            db_url = argv[++i];
        else if (strcmp(argv[i], "--json") == 0)
            want_json = 1;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return EXIT_OK;
        } else
            die_usage("unknown option \"%s\"", argv[i]);
    }
    if (i >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    argc -= i;
    argv += i;
    if (strcmp(argv[0], "migrate") == 0)
        return cmd_migrate(argc, argv);
    if (strcmp(argv[0], "start") == 0)
        return cmd_start(argc, argv);
    if (strcmp(argv[0], "list") == 0)
        return cmd_list(argc, argv);
    if (strcmp(argv[0], "show") == 0)
        return cmd_show(argc, argv);
    if (strcmp(argv[0], "history") == 0)
        return cmd_history(argc, argv);
    if (strcmp(argv[0], "defs") == 0)
        return cmd_defs(argc, argv);
    if (strcmp(argv[0], "stuck") == 0)
        return cmd_stuck(argc, argv);
    if (strcmp(argv[0], "stats") == 0)
        return cmd_stats(argc, argv);
    if (strcmp(argv[0], "retry") == 0)
        return cmd_retry(argc, argv);
    if (strcmp(argv[0], "compensate") == 0)
        return cmd_compensate(argc, argv);
    if (strcmp(argv[0], "skip") == 0)
        return cmd_skip(argc, argv);
    if (strcmp(argv[0], "resolve") == 0)
        return cmd_resolve(argc, argv);
    if (strcmp(argv[0], "wait") == 0)
        return cmd_wait(argc, argv);
    if (strcmp(argv[0], "validate") == 0)
        return cmd_validate(argc, argv);
    if (strcmp(argv[0], "purge") == 0)
        return cmd_purge(argc, argv);
    die_usage("unknown command \"%s\"", argv[0]);
    return EXIT_USAGE;
}
