/* sagactl: the operator's command line. Exit codes: 0 ok, 1 not found or
 * refused, 2 usage, 3 cannot reach the database (or schema not migrated). */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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
#include "saga_shared.h"

const char *db_url;
int want_json;

void die_usage(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "sagactl: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'sagactl --help'.\n");
    exit(EXIT_USAGE);
}

const char *opt_value(const char *cmd, int argc, char **argv, int *k)
{
    if (*k + 1 >= argc)
        die_usage("%s%s%s needs a value", cmd, *cmd ? ": " : "", argv[*k]);
    return argv[++*k];
}

long parse_number(const char *cmd, const char *opt, const char *text, long min, long max)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(text, &end, 10);
    /* strtol skips leading blanks and takes a sign: neither is a count. */
    if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno == ERANGE || v < min ||
        v > max)
        die_usage("%s: %s needs a whole number from %ld to %ld, not \"%s\"", cmd, opt,
                  min, max, text);
    return v;
}

int64_t check_duration_opt(const char *cmd, const char *opt, const char *text,
                           const char *example, int parse_rc, int64_t ms)
{
    if (parse_rc != 0)
        die_usage("%s: %s needs a duration such as %s, not \"%s\"", cmd, opt, example,
                  text);
    if (ms > SAGACTL_MAX_DURATION_MS)
        die_usage("%s: %s \"%s\" is too long (at most 3650 days)", cmd, opt, text);
    return ms;
}

int64_t parse_duration_opt(const char *cmd, const char *opt, const char *text,
                           const char *example)
{
    int64_t ms = 0;
    int rc = saga_duration_parse(text, &ms);
    return check_duration_opt(cmd, opt, text, example, rc, ms);
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
    saga__pq_quiet(db);
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
    /* Ten significant digits: 0.7, not jansson's default 0.69999999999999996. */
    char *t =
        json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    puts(t ? t : "null");
    free(t);
}

const char *str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "-";
}

int check_uuid(const char *cmd, const char *id)
{
    uuid_t u;
    if (uuid_parse(id, u) != 0)
        die_usage("%s: \"%s\" is not a saga id (expected a UUID)", cmd, id);
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
    const char *pre = s <= -0.5 ? "in " : "", *post = s <= -0.5 ? "" : " ago";
    if (s < 0)
        s = -s;
    if (s < 60)
        snprintf(buf, size, "%s%.0fs%s", pre, s, post);
    else if (s < 3600)
        snprintf(buf, size, "%s%.0fm%s", pre, s / 60, post);
    else if (s < 86400)
        snprintf(buf, size, "%s%.1fh%s", pre, s / 3600, post);
    else
        snprintf(buf, size, "%s%.1fd%s", pre, s / 86400, post);
}

double db_now(PGconn *db)
{
    PGresult *r = PQexec(db, "SELECT extract(epoch FROM now())::float8");
    double now = (double)time(NULL);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        now = strtod(PQgetvalue(r, 0, 0), NULL);
    PQclear(r);
    return now;
}

void format_when(const char *iso, double now, int with_ms, char *buf, size_t size)
{
    struct tm tm = {0};
    int ms = 0, n;
    char age[32];
    if (iso == NULL || strcmp(iso, "-") == 0) {
        snprintf(buf, size, "-");
        return;
    }
    /* saga.iso() writes YYYY-MM-DDTHH:MI:SS.MSZ, always UTC. */
    n = sscanf(iso, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms);
    if (n != 7) {
        snprintf(buf, size, "%s", iso); /* not ours: show it as it is */
        return;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    format_age(now - ((double)timegm(&tm) + ms / 1000.0), age, sizeof age);
    if (with_ms)
        snprintf(buf, size, "%04d-%02d-%02d %02d:%02d:%02d.%03d (%s)", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms, age);
    else
        snprintf(buf, size, "%04d-%02d-%02d %02d:%02d:%02d (%s)", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, age);
}

int widen(int w, const char *s)
{
    int n = (int)strlen(s);
    return n > w ? n : w;
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
        if (strcmp(argv[i], "--dir") == 0)
            dir = opt_value("migrate", argc, argv, &i);
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

/* The --input value as JSON: the text itself, @FILE, or - (stdin), so
 * that an input too long for a command line can be given. Exit 2 naming
 * what is wrong. */
static json_t *load_input(const char *arg)
{
    json_error_t jerr;
    json_t *input;
    char what[300] = "";

    if (strcmp(arg, "-") == 0) {
        input = json_loadf(stdin, 0, &jerr);
        snprintf(what, sizeof what, "--input - (stdin)");
    } else if (arg[0] == '@') { /* no JSON text starts with '@' */
        FILE *f = fopen(arg + 1, "rb");
        if (f == NULL)
            die_usage("start: --input %s: cannot open: %s", arg, strerror(errno));
        input = json_loadf(f, 0, &jerr);
        fclose(f);
        snprintf(what, sizeof what, "--input %.280s", arg);
    } else {
        input = json_loads(arg, 0, &jerr);
    }
    if (input == NULL && what[0] == '\0')
        die_usage("start: --input must be a JSON object: %s", jerr.text);
    if (input == NULL)
        die_usage("start: %s: line %d, column %d: %s", what, jerr.line, jerr.column,
                  jerr.text);
    if (!json_is_object(input))
        die_usage("start: %s must be a JSON object: found another JSON value",
                  what[0] ? what : "--input");
    return input;
}

static int cmd_start(int argc, char **argv)
{
    const char *name = NULL, *input_arg = NULL, *key = NULL, *traceparent = NULL;
    saga_client *client = NULL;
    saga_error err = {0};
    saga_trace_context tc;
    json_t *input;
    char id[SAGA_ID_LEN + 1], status[32] = "pending";
    int existed = 0, rc, wait_ms = 10000;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--input") == 0)
            input_arg = opt_value("start", argc, argv, &i);
        else if (strcmp(argv[i], "--key") == 0)
            key = opt_value("start", argc, argv, &i);
        else if (strcmp(argv[i], "--traceparent") == 0)
            traceparent = opt_value("start", argc, argv, &i);
        else if (strcmp(argv[i], "--no-wait") == 0)
            wait_ms = 0;
        else if (strcmp(argv[i], "--json") == 0)
            want_json = 1;
        else if (strcmp(argv[i], "--help") == 0) {
            printf("usage: sagactl start NAME [--input JSON|@FILE|-] [--key "
                   "IDEMPOTENCY_KEY]\n"
                   "                    [--traceparent TP] [--no-wait] [--json]\n"
                   "Asks sagad to start a saga of the latest version of definition NAME "
                   "and prints\nits id once sagad has created it (up to 10 s; "
                   "--no-wait: at once).\n"
                   "--input @FILE reads the input from FILE, --input - from stdin; it "
                   "may be at\nmost saga.limits max_input_bytes (see `sagactl "
                   "limits`): a larger one is\nrefused (exit 1) with its size and the "
                   "limit.\n"
                   "With --key, starting twice with the same key gives the same saga "
                   "(an empty\nkey is refused: leave --key out for none).\n"
                   "With --traceparent (W3C), the saga continues that trace.\n");
            return EXIT_OK;
        } else if (argv[i][0] == '-')
            die_usage("start: unknown option \"%s\"", argv[i]);
        else if (name == NULL)
            name = argv[i];
        else
            die_usage("start: unexpected argument \"%s\"", argv[i]);
    }
    if (name == NULL || *name == '\0')
        die_usage("start: missing the definition %s", "NAME");
    /* A key from an empty variable is a script's mistake: as no key, a
     * retried start would start a second saga. */
    if (key != NULL && *key == '\0')
        die_usage("start: --key needs a non-empty key (leave --key out for none)");
    if (traceparent != NULL && *traceparent != '\0' &&
        saga_traceparent_parse(traceparent, strlen(traceparent), &tc) != SAGA_OK)
        die_usage("start: --traceparent \"%.80s\" is not a W3C traceparent "
                  "(00-<32 hex digits>-<16 hex digits>-<2 hex digits>)",
                  traceparent);
    input = input_arg != NULL ? load_input(input_arg) : json_object();
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
    /* Every argument was checked above: what the client still finds
     * invalid is the input's size (over saga.limits max_input_bytes). */
    if (rc == SAGA_EINVAL) {
        fprintf(stderr, "sagactl start: refused: %s\n", err.message);
        return EXIT_REFUSED;
    }
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
    const char *status = NULL, *name = NULL, *since = NULL, *older = NULL;
    char since_ms[32], older_ms[32], limit[32] = "50";
    const char *p[5];
    json_t *rows, *row;
    size_t i;
    double now;
    PGconn *db;

    for (int k = 1; k < argc; k++) {
        if (strcmp(argv[k], "--status") == 0) {
            saga_status st;
            status = opt_value("list", argc, argv, &k);
            if (saga_status_parse(status, &st) != 0 || st == SAGA_ST_NEW)
                die_usage(
                    "list: unknown status \"%s\" (running, compensating, completed, "
                    "compensated, failed, resolved)",
                    status);
        } else if (strcmp(argv[k], "--saga") == 0) {
            name = opt_value("list", argc, argv, &k);
        } else if (strcmp(argv[k], "--limit") == 0) {
            long n = parse_number("list", "--limit", opt_value("list", argc, argv, &k), 1,
                                  100000);
            snprintf(limit, sizeof limit, "%ld", n);
        } else if (strcmp(argv[k], "--since") == 0) {
            int64_t ms = parse_duration_opt(
                "list", "--since", opt_value("list", argc, argv, &k), "10m or 2h");
            snprintf(since_ms, sizeof since_ms, "%lld", (long long)ms);
            since = since_ms;
        } else if (strcmp(argv[k], "--older-than") == 0) {
            int64_t ms = parse_duration_opt(
                "list", "--older-than", opt_value("list", argc, argv, &k), "10m or 2h");
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
    now = db_now(db);
    PQfinish(db);
    if (want_json) {
        print_json(rows);
    } else if (json_array_size(rows) == 0) {
        printf("(no sagas)\n");
    } else {
        int wsaga = 4, wstatus = 6, wstep = 4;
        json_array_foreach(rows, i, row)
        {
            char saga[300];
            snprintf(saga, sizeof saga, "%s@%lld", str(row, "name"),
                     (long long)json_integer_value(json_object_get(row, "version")));
            wsaga = widen(wsaga, saga);
            wstatus = widen(wstatus, str(row, "status"));
            wstep = widen(wstep, str(row, "step_name"));
        }
        printf("%-36s  %-*s  %-*s  %-*s  %s\n", "ID", wsaga, "SAGA", wstatus, "STATUS",
               wstep, "STEP", "UPDATED");
        json_array_foreach(rows, i, row)
        {
            char saga[300], when[96];
            const char *st = str(row, "status");
            snprintf(saga, sizeof saga, "%s@%lld", str(row, "name"),
                     (long long)json_integer_value(json_object_get(row, "version")));
            format_when(str(row, "updated_at"), now, 0, when, sizeof when);
            printf("%-36s  %-*s  %s%-*s%s  %-*s  %s\n", str(row, "id"), wsaga, saga,
                   color_for_status(st), wstatus, st, color_reset(), wstep,
                   str(row, "step_name"), when);
        }
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

/* ---- an id with no saga: its start request ---- */

/* The start request of id as one JSON object (NULL row: none). status
 * is pending (sagad has not taken it yet), rejected (error says why) or
 * processed (it became a saga). */
static const char request_sql[] =
    "SELECT json_build_object('id', id, 'name', name,"
    " 'status', CASE WHEN error IS NOT NULL THEN 'rejected'"
    "  WHEN processed_at IS NULL THEN 'pending' ELSE 'processed' END,"
    " 'input', input, 'idempotency_key', idempotency_key,"
    " 'requested_at', saga.iso(requested_at), 'processed_at', saga.iso(processed_at),"
    " 'error', error) FROM saga.start_request WHERE id = $1";

static json_t *start_request(PGconn *db, const char *id)
{
    const char *p[1] = {id};
    return query_json(db, request_sql, 1, p);
}

/* Why id names no saga, on stderr as `sagactl CMD: ...`: nothing has that
 * id, or its start request (req, from request_sql; NULL: none) is not
 * turned into a saga yet, was rejected, or its saga was deleted since.
 * `sagactl start` prints the id before sagad has created the saga when
 * sagad is not running: "no saga" would send the operator looking for a
 * lost one. */
static void say_no_saga(const char *cmd, const char *id, const json_t *req, double now)
{
    const char *status = str(req, "status");
    char when[96];
    format_when(str(req, "requested_at"), now, 0, when, sizeof when);
    if (req == NULL)
        fprintf(stderr, "sagactl %s: no saga %s\n", cmd, id);
    else if (strcmp(status, "pending") == 0)
        fprintf(stderr,
                "sagactl %s: saga %s is requested but not started yet (start request for "
                "%s from %s, waiting for sagad)\n",
                cmd, id, str(req, "name"), when);
    else if (strcmp(status, "rejected") == 0)
        fprintf(stderr,
                "sagactl %s: saga %s was never started: its start request for %s from %s "
                "was rejected: %s\n",
                cmd, id, str(req, "name"), when, str(req, "error"));
    else
        fprintf(
            stderr,
            "sagactl %s: no saga %s (its start request from %s was processed; the saga "
            "has been deleted since)\n",
            cmd, id, when);
}

/* show for an id that is a start request still pending (exit 0) or
 * rejected (exit 1: there is no saga, and there will be none). */
static int show_request(json_t *req, double now)
{
    const char *status = str(req, "status");
    char when[96];
    if (want_json) {
        print_json(req);
    } else {
        printf("saga      %s\n", str(req, "id"));
        printf("name      %s\n", str(req, "name"));
        if (strcmp(status, "pending") == 0)
            printf("status    pending: requested but not started yet (waiting for "
                   "sagad)\n");
        else
            printf("status    rejected: its start request was refused: %s\n",
                   str(req, "error"));
        format_when(str(req, "requested_at"), now, 0, when, sizeof when);
        printf("requested %s\n", when);
        if (json_is_string(json_object_get(req, "idempotency_key")))
            printf("key       %s\n", str(req, "idempotency_key"));
        {
            char *in = json_dumps(json_object_get(req, "input"), JSON_COMPACT);
            printf("input     %s\n", in ? in : "{}");
            free(in);
        }
    }
    return strcmp(status, "pending") == 0 ? EXIT_OK : EXIT_REFUSED;
}

/* A step's error is shown where it explains the step's status: the
 * failure, or the last failed attempt of one still being retried. A
 * step that succeeded, was compensated or skipped shows its output. */
static int error_belongs(const char *status)
{
    static const char *const with_error[] = {"failed", "unknown", "compensation_failed",
                                             "dispatched", "compensating"};
    for (size_t i = 0; i < sizeof with_error / sizeof with_error[0]; i++)
        if (strcmp(status, with_error[i]) == 0)
            return 1;
    return 0;
}

static int cmd_show(int argc, char **argv)
{
    const char *id = NULL;
    json_t *saga, *steps, *st, *req;
    size_t i;
    double now;
    int wname = 4, wstatus = 6, wstart = 7, wfinish = 8;
    char when[96];
    PGconn *db;

    for (int k = 1; k < argc; k++) {
        if (strcmp(argv[k], "--json") == 0)
            want_json = 1;
        else if (strcmp(argv[k], "--help") == 0) {
            printf(
                "usage: sagactl show ID [--json]\nShows a saga: definition and version, "
                "status, input, and each step with status, attempts, times, output or "
                "error.\nAn id whose start request sagad has not turned into a saga yet "
                "shows as pending;\none it rejected, as rejected with the reason "
                "(exit 1).\n");
            return EXIT_OK;
        } else if (id == NULL && argv[k][0] != '-')
            id = argv[k];
        else
            die_usage("show: unexpected argument \"%s\"", argv[k]);
    }
    if (id == NULL)
        die_usage("show: missing the saga %s", "ID");
    check_uuid("show", id);
    db = connect_db(1);
    {
        const char *p[1] = {id};
        saga = query_json(db, show_sql, 1, p);
    }
    req = saga == NULL ? start_request(db, id) : NULL;
    now = db_now(db);
    PQfinish(db);
    if (saga == NULL) {
        const char *rs = str(req, "status");
        int rc = EXIT_REFUSED;
        if (strcmp(rs, "pending") == 0 || strcmp(rs, "rejected") == 0)
            rc = show_request(req, now);
        else
            say_no_saga("show", id, req, now);
        json_decref(req);
        return rc;
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
    format_when(str(saga, "created_at"), now, 0, when, sizeof when);
    printf("created   %s\n", when);
    format_when(str(saga, "updated_at"), now, 0, when, sizeof when);
    printf("updated   %s\n", when);
    if (json_is_string(json_object_get(saga, "wake_at"))) {
        format_when(str(saga, "wake_at"), now, 0, when, sizeof when);
        printf("next      %s (a timeout or retry)\n", when);
    }
    if (json_string_length(json_object_get(saga, "trace_id")) > 0)
        printf("trace     %s\n", str(saga, "trace_id"));
    {
        char *in = json_dumps(json_object_get(saga, "input"), JSON_COMPACT);
        printf("input     %s\n", in ? in : "{}");
        free(in);
    }
    steps = json_object_get(saga, "steps");
    json_array_foreach(steps, i, st)
    {
        wname = widen(wname, str(st, "name"));
        wstatus = widen(wstatus, str(st, "status"));
        format_when(str(st, "started_at"), now, 0, when, sizeof when);
        wstart = widen(wstart, when);
        format_when(str(st, "finished_at"), now, 0, when, sizeof when);
        wfinish = widen(wfinish, when);
    }
    printf("\n  #  %-*s  %-*s  %3s  %-*s  %-*s  %s\n", wname, "STEP", wstatus, "STATUS",
           "TRY", wstart, "STARTED", wfinish, "FINISHED", "OUTPUT / ERROR");
    json_array_foreach(steps, i, st)
    {
        json_t *res = json_object_get(st, "error");
        char *t, started[96];
        if (json_is_null(res) || res == NULL || !error_belongs(str(st, "status")))
            res = json_object_get(st, "output");
        t = (res && !json_is_null(res)) ? json_dumps(res, JSON_COMPACT) : NULL;
        format_when(str(st, "started_at"), now, 0, started, sizeof started);
        format_when(str(st, "finished_at"), now, 0, when, sizeof when);
        printf("%3lld  %-*s  %-*s  %3lld  %-*s  %-*s  %s\n",
               (long long)json_integer_value(json_object_get(st, "index")), wname,
               str(st, "name"), wstatus, str(st, "status"),
               (long long)json_integer_value(json_object_get(st, "attempts")), wstart,
               started, wfinish, when, t ? t : "");
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

/* An event's STEP column: "name#attempt", the step's name, or "". */
static void history_step(const json_t *ev, char *buf, size_t size)
{
    buf[0] = '\0';
    if (json_is_integer(json_object_get(ev, "attempt")))
        snprintf(buf, size, "%s#%lld", str(ev, "step_name"),
                 (long long)json_integer_value(json_object_get(ev, "attempt")));
    else if (json_is_integer(json_object_get(ev, "step")))
        snprintf(buf, size, "%s", str(ev, "step_name"));
}

static int cmd_history(int argc, char **argv)
{
    const char *id = NULL;
    char traceparent[SAGA_TRACEPARENT_LEN + 1] = "";
    json_t *events, *ev, *req;
    size_t i;
    double now;
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
    check_uuid("history", id);
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
    req = events == NULL ? start_request(db, id) : NULL;
    now = db_now(db);
    PQfinish(db);
    if (events == NULL) {
        say_no_saga("history", id, req, now);
        json_decref(req);
        return EXIT_REFUSED;
    }
    add_spans(events, traceparent);
    if (want_json) {
        print_json(events);
    } else {
        char trace_id[SAGA_TRACE_ID_HEX_SIZE], span_id[SAGA_SPAN_ID_HEX_SIZE];
        int wat = 2, wkind = 5, wstep = 4, wactor = 5, wspan = 4;
        char when[96], step[300];
        saga_tracing_ids(traceparent, trace_id, span_id);
        if (trace_id[0])
            printf("trace %s (saga span %s); SPAN is each attempt's, as its command "
                   "carried it\n",
                   trace_id, span_id);
        json_array_foreach(events, i, ev)
        {
            format_when(str(ev, "at"), now, 1, when, sizeof when);
            wat = widen(wat, when);
            wkind = widen(wkind, str(ev, "kind"));
            history_step(ev, step, sizeof step);
            wstep = widen(wstep, step);
            wactor = widen(wactor, str(ev, "actor"));
            if (json_is_string(json_object_get(ev, "span_id")))
                wspan = widen(wspan, str(ev, "span_id"));
        }
        printf("%-*s  %9s  %-*s  %-*s  %-*s  %-*s  %s\n", wat, "AT", "+PREVIOUS", wkind,
               "EVENT", wstep, "STEP", wspan, "SPAN", wactor, "ACTOR", "DETAIL");
        json_array_foreach(events, i, ev)
        {
            json_t *d = json_object_get(ev, "detail");
            json_t *prev = json_object_get(ev, "since_previous_ms");
            char *t = (d && !json_is_null(d)) ? json_dumps(d, JSON_COMPACT) : NULL;
            char delta[32] = "";
            if (json_is_number(prev))
                snprintf(delta, sizeof delta, "+%.0fms", json_number_value(prev));
            format_when(str(ev, "at"), now, 1, when, sizeof when);
            history_step(ev, step, sizeof step);
            printf("%-*s  %9s  %-*s  %-*s  %-*s  %-*s  %s\n", wat, when, delta, wkind,
                   str(ev, "kind"), wstep, step, wspan,
                   json_is_string(json_object_get(ev, "span_id")) ? str(ev, "span_id")
                                                                  : "",
                   wactor, str(ev, "actor"), t ? t : "");
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
        if (strcmp(argv[k], "--timeout") == 0) {
            timeout = parse_duration_opt("wait", "--timeout",
                                         opt_value("wait", argc, argv, &k), "30s or 2m");
        } else if (strcmp(argv[k], "--json") == 0) {
            want_json = 1;
        } else if (strcmp(argv[k], "--help") == 0) {
            printf(
                "usage: sagactl wait ID [--timeout DUR] [--json]\n"
                "Waits (default 60s) until the saga is completed, compensated, failed "
                "or\nresolved and prints that status.\n"
                "Exit 0 when it ended completed or compensated; 1 when it ended failed "
                "or\nresolved, is not found, or is still going at the timeout. A saga "
                "requested but\nnot created by sagad yet is waited for; a rejected "
                "request prints rejected\n(exit 1).\n");
            return EXIT_OK;
        } else if (id == NULL && argv[k][0] != '-') {
            id = argv[k];
        } else {
            die_usage("wait: unexpected argument \"%s\"", argv[k]);
        }
    }
    if (id == NULL)
        die_usage("wait: missing the saga %s", "ID");
    check_uuid("wait", id);
    db = connect_db(1);
    until = saga_now_ms() + timeout;
    for (;;) {
        const char *p[1] = {id};
        /* A start request not yet taken by sagad is waited for like a saga
         * (pending); one it rejected ends the wait. */
        PGresult *r = PQexecParams(
            db,
            "SELECT coalesce(s.status, CASE WHEN r.error IS NOT NULL THEN 'rejected'"
            " WHEN r.processed_at IS NULL THEN 'pending' END)"
            " FROM (SELECT $1::uuid AS id) q"
            " LEFT JOIN saga.saga s ON s.id = q.id"
            " LEFT JOIN saga.start_request r ON r.id = q.id",
            1, NULL, p, NULL, NULL, 0);
        char status[32] = "";
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            fprintf(stderr, "sagactl wait: %s", PQerrorMessage(db));
            PQclear(r);
            PQfinish(db);
            return EXIT_DB;
        }
        if (PQntuples(r) == 0 || PQgetisnull(r, 0, 0) ||
            strcmp(PQgetvalue(r, 0, 0), "rejected") == 0) {
            json_t *req = start_request(db, id);
            int rejected = PQntuples(r) == 1 && !PQgetisnull(r, 0, 0);
            PQclear(r);
            if (rejected && want_json)
                printf("{\"id\": \"%s\", \"status\": \"rejected\"}\n", id);
            else if (rejected)
                printf("rejected\n");
            say_no_saga("wait", id, req, db_now(db));
            json_decref(req);
            PQfinish(db);
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
            if (strcmp(status, "pending") == 0)
                fprintf(stderr,
                        "sagactl wait: saga %s is still requested but not started after "
                        "the timeout: is sagad running?\n",
                        id);
            else
                fprintf(stderr, "sagactl wait: saga %s still %s after the timeout\n", id,
                        status);
            return EXIT_REFUSED;
        }
        usleep(100 * 1000);
    }
}

/* ---- validate ---- */

/* The --json element for one file: file, ok, saga, steps, problems
 * (every one found: where and message), more_problems (those past the 64
 * kept). */
static json_t *validate_json(const char *file, const saga_definition *def,
                             const saga_def_problems *probs)
{
    json_t *problems = json_array();
    int kept = probs->count < 64 ? probs->count : 64;
    for (int i = 0; i < kept; i++)
        json_array_append_new(problems,
                              json_pack("{s:s, s:s}", "where", probs->items[i].where,
                                        "message", probs->items[i].message));
    return json_pack("{s:s, s:b, s:o, s:o, s:o, s:i}", "file", file, "ok", def != NULL,
                     "saga", def ? json_string(def->name) : json_null(), "steps",
                     def ? json_integer(def->nsteps) : json_null(), "problems", problems,
                     "more_problems", probs->count - kept);
}

static int cmd_validate(int argc, char **argv)
{
    int bad = 0, files = 0;
    long max_bytes = SAGA_DEFAULT_MAX_DEFINITION_BYTES;
    json_t *results;
    for (int k = 1; k < argc; k++) {
        if (strcmp(argv[k], "--json") == 0)
            want_json = 1;
        else if (strcmp(argv[k], "--max-definition-bytes") == 0)
            max_bytes =
                parse_number("validate", "--max-definition-bytes",
                             opt_value("validate", argc, argv, &k), 1, 1073741824L);
        else if (strcmp(argv[k], "--help") == 0) {
            printf("usage: sagactl validate FILE... [--max-definition-bytes N] [--json]\n"
                   "Checks saga definitions; prints every problem with file, place and "
                   "what is expected.\n"
                   "No database: a definition may be at most 262,144 bytes of JSON text "
                   "as stored,\nunless --max-definition-bytes says otherwise (what "
                   "`sagactl limits` shows).\n"
                   "--json: an array with one object per file (file, ok, saga, steps,\n"
                   "problems [{where, message}], more_problems).\nExit 0 when all are "
                   "valid, 1 otherwise.\n");
            return EXIT_OK;
        } else if (argv[k][0] == '-' && argv[k][1] != '\0')
            die_usage("validate: unknown option \"%s\"", argv[k]);
    }
    results = json_array();
    for (int k = 1; k < argc; k++) {
        saga_def_problems probs = {.max_bytes = max_bytes};
        saga_definition *def = NULL;
        if (strcmp(argv[k], "--json") == 0)
            continue;
        if (strcmp(argv[k], "--max-definition-bytes") == 0) {
            k++; /* and its value */
            continue;
        }
        files++;
        if (saga_definition_load_file(argv[k], &def, &probs) != SAGA_OK) {
            def = NULL;
            bad++;
            if (!want_json) {
                for (int i = 0; i < probs.count && i < 64; i++)
                    fprintf(stderr, "%s: %s: %s\n", argv[k], probs.items[i].where,
                            probs.items[i].message);
                if (probs.count > 64)
                    fprintf(stderr, "%s: ... and %d more problems\n", argv[k],
                            probs.count - 64);
            }
        } else if (!want_json) {
            printf("%s: ok (saga \"%s\", %d steps)\n", argv[k], def->name, def->nsteps);
        }
        if (want_json)
            json_array_append_new(results, validate_json(argv[k], def, &probs));
        saga_definition_free(def);
    }
    if (files == 0) {
        json_decref(results);
        die_usage("validate: no %s given", "FILE");
    }
    if (want_json)
        print_json(results);
    json_decref(results);
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
        "  start NAME [--input JSON|@FILE|-] [--key K]\n"
        "                                      start a saga, print its id\n"
        "  migrate [--dir DIR]                 apply pending schema migrations\n"
        "  validate FILE... [--json]           check definition files\n"
        "  defs deploy FILE... | list | show NAME [--version N]   stored definitions\n"
        "  limits [set NAME BYTES --reason T]  the largest input, output, definition\n"
        "Keeping history:\n"
        "  purge --older-than DUR [--status S] [--batch N] [--archive FILE] [--dry-run]\n"
        "                                      delete finished sagas by age\n"
        "Dead letters (what sagad set aside so that it could not stall the rest):\n"
        "  dead list [--source S] [--since DUR] [--limit N] [--all]\n"
        "  dead show ID | dead replay ID --reason TEXT | dead purge --older-than DUR\n\n"
        "Options:\n"
        "  --db URL    PostgreSQL (default $SAGA_PG_URL)\n"
        "  --json      machine-readable output (every command that reads)\n"
        "  --help      this text; `sagactl COMMAND --help` for a command\n\n"
        "Exit codes: 0 ok, 1 not found or refused (stuck: some found; wait: ended\n"
        "failed or resolved, or timed out), 2 usage, 3 database unreachable or not\n"
        "migrated.\n");
}

int main(int argc, char **argv)
{
    int i = 1;
    db_url = getenv("SAGA_PG_URL");
    /* Repairs draw their retry jitter from rand(): unseeded, every sagactl
     * run would draw the same one. */
    srand((unsigned)time(NULL) ^ ((unsigned)getpid() << 16));
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--db") == 0)
            db_url = opt_value("", argc, argv, &i);
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
    if (strcmp(argv[0], "dead") == 0)
        return cmd_dead(argc, argv);
    if (strcmp(argv[0], "limits") == 0)
        return cmd_limits(argc, argv);
    die_usage("unknown command \"%s\"", argv[0]);
    return EXIT_USAGE;
}
