/* sagactl_common.c - what every sagactl command uses: usage errors, option
 * values (numbers, durations), the database connection, JSON queries and
 * output, saga ids, colours, ages and times as people read them. */
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
#include "saga_shared.h"
#include "saga_store.h"
#include "saga_tracing.h"
#include "sagactl.h"

const char *db_url;
int want_json;

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

int sagactl_getopt(const char *cmd, int argc, char **argv, const struct option *opts)
{
    int c;
    opterr = 0; /* the messages below name the command */
    c = getopt_long(argc, argv, ":", opts, NULL);
    if (c == ':')
        die_usage("%s%s%s needs a value", cmd, *cmd ? ": " : "", argv[optind - 1]);
    if (c == '?')
        die_usage("%s%sunknown option \"%s\"", cmd, *cmd ? ": " : "", argv[optind - 1]);
    return c;
}

void print_problems(const char *file, const saga_def_problems *probs)
{
    for (int i = 0; i < probs->count && i < 64; i++)
        fprintf(stderr, "%s: %s: %s\n", file, probs->items[i].where,
                probs->items[i].message);
    /* Only the first 64 are kept; say how many more there are. */
    if (probs->count > 64)
        fprintf(stderr, "%s: ... and %d more problems\n", file, probs->count - 64);
}

const char *sagactl_operand(const char *cmd, int argc, char **argv)
{
    if (optind + 1 < argc)
        die_usage("%s: unexpected argument \"%s\"", cmd, argv[optind + 1]);
    return optind < argc ? argv[optind] : NULL;
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
        j = saga__json_from_pg(PQgetvalue(r, 0, 0), JSON_DECODE_ANY, NULL);
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
