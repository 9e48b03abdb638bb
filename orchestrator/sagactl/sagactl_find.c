/* sagactl stuck / stats: finding what needs an operator. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga_attention.h"
#include "saga_duration.h"
#include "saga_machine.h"
#include "sagactl.h"

/* Failed sagas, and active ones whose last progress (a status change of
 * the saga or a step; retries and holds are not progress) is older than
 * $1 ms; the oldest first, each with what it waits on. */
static const char stuck_sql[] =
    "SELECT coalesce(json_agg(x ORDER BY x.idle_seconds DESC), '[]') FROM ("
    " SELECT s.id, s.name, s.version, s.status, st.idx AS step_index, st.name AS step,"
    "  st.status AS step_status, st.attempts, st.error,"
    "  saga.iso(s.progressed_at) AS since,"
    "  round(extract(epoch FROM now() - s.progressed_at)::numeric, 0) AS idle_seconds,"
    "  (SELECT e.kind FROM saga.saga_event e WHERE e.saga_id = s.id"
    "   ORDER BY e.id DESC LIMIT 1) AS last_event,"
    /* Why the machine stopped it: a definite failure and retries that
     * ran out read alike in the step's row, not in this. */
    "  CASE WHEN s.status = 'failed' THEN (SELECT e.detail->>'reason'"
    "   FROM saga.saga_event e WHERE e.saga_id = s.id AND e.kind = 'saga_failed'"
    "   ORDER BY e.id DESC LIMIT 1) END AS failed_reason"
    " FROM saga.saga s JOIN saga.saga_step st ON st.saga_id = s.id AND st.idx = "
    "s.cursor_step"
    " WHERE s.status = 'failed' OR (s.status IN ('running', 'compensating')"
    "  AND s.progressed_at < now() - $1::bigint * interval '1 millisecond')) x";

/* The one-line reason a saga needs attention; with_since adds since when
 * it waits (the human table has a SINCE column instead). */
static void describe(json_t *row, int with_since, char *buf, size_t size)
{
    const char *status = str(row, "status"), *step = str(row, "step");
    const char *step_status = str(row, "step_status");
    long long attempts = (long long)json_integer_value(json_object_get(row, "attempts"));
    json_t *err = json_object_get(row, "error");
    const char *msg = json_string_value(json_object_get(err, "message"));
    const char *code = json_string_value(json_object_get(err, "code"));
    char last[300] = "", since[96] = "";

    const char *failed = str(row, "failed_reason");
    /* Said as the history says it (saga_failed's reason): "gave up" only
     * where retries ran out, "failed definitively" where a reply said so. */
    int definite = strcmp(failed, "compensation failed definitively") == 0;
    int no_input = strncmp(failed, "a step after the pivot cannot be run", 36) == 0;
    int gave_up;

    if (with_since)
        snprintf(since, sizeof since, " since %s", str(row, "since"));
    /* The last of several attempts, or the one definite failure. */
    gave_up = strcmp(status, "failed") != 0 ||
              (strcmp(step_status, "compensation_failed") == 0 && !definite);
    if (msg != NULL || code != NULL)
        snprintf(last, sizeof last, "; %s %s: %s", gave_up ? "last error" : "error",
                 code ? code : "?", msg ? msg : "");
    if (strcmp(status, "failed") == 0 && strcmp(step_status, "compensation_failed") == 0)
        snprintf(buf, size,
                 definite ? "compensation of %s failed definitively (attempt %lld)%s"
                          : "compensation of %s gave up after %lld attempt(s)%s",
                 step, attempts, last);
    else if (strcmp(status, "failed") == 0 && no_input)
        snprintf(buf, size,
                 "%s cannot run: its input does not resolve, and after the pivot it "
                 "cannot be compensated%s",
                 step, last);
    else if (strcmp(status, "failed") == 0)
        snprintf(buf, size,
                 "%s failed definitively (attempt %lld) after the pivot, so it cannot be "
                 "compensated%s",
                 step, attempts, last);
    else if (strcmp(status, "compensating") == 0)
        snprintf(buf, size, "waiting on the compensation of %s (attempt %lld)%s%s", step,
                 attempts, since, last);
    else
        snprintf(buf, size, "waiting on %s (attempt %lld)%s%s", step, attempts, since,
                 last);
}

int cmd_stuck(int argc, char **argv)
{
    const char *older = getenv("SAGA_STUCK_AFTER"), *opt = "$SAGA_STUCK_AFTER";
    int64_t ms;
    char msbuf[32];
    const char *p[1] = {msbuf};
    json_t *rows, *row;
    size_t i;
    double now;
    PGconn *db;

    if (older == NULL) {
        older = "5m";
        opt = "--older-than";
    }
    static const struct option opts[] = {{"older-than", required_argument, NULL, 'o'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    for (int c; (c = sagactl_getopt("stuck", argc, argv, opts)) != -1;) {
        if (c == 'o') {
            older = optarg;
            opt = "--older-than";
        } else if (c == 'j')
            want_json = 1;
        else {
            printf(
                "usage: sagactl stuck [--older-than DUR] [--json]\n"
                "Sagas that need an operator: every failed saga, and running or\n"
                "compensating sagas that made no progress for longer than DUR (default\n"
                "$SAGA_STUCK_AFTER, else 5m), the longest waiting first, with the "
                "reason.\n"
                "Exit 0 when there are none, 1 when there are some (for alerting).\n");
            return EXIT_OK;
        }
    }
    if (optind < argc)
        die_usage("stuck: unexpected argument \"%s\"", argv[optind]);
    ms = parse_duration_opt("stuck", opt, older, "30s or 5m");
    snprintf(msbuf, sizeof msbuf, "%lld", (long long)ms);
    db = connect_db(1);
    rows = query_json(db, stuck_sql, 1, p);
    now = db_now(db);
    PQfinish(db);
    json_array_foreach(rows, i, row)
    {
        char reason[700];
        describe(row, 1, reason, sizeof reason);
        json_object_set_new(row, "reason", json_string(reason));
    }
    if (want_json) {
        print_json(rows);
    } else if (json_array_size(rows) == 0) {
        printf("no stuck sagas (none failed, none idle for more than %s)\n", older);
    } else {
        int wsaga = 4, wstatus = 6, wsince = 5;
        char saga[300], when[96];
        json_array_foreach(rows, i, row)
        {
            snprintf(saga, sizeof saga, "%s@%lld", str(row, "name"),
                     (long long)json_integer_value(json_object_get(row, "version")));
            wsaga = widen(wsaga, saga);
            wstatus = widen(wstatus, str(row, "status"));
            format_when(str(row, "since"), now, 0, when, sizeof when);
            wsince = widen(wsince, when);
        }
        printf("%-36s  %-*s  %-*s  %-*s  %s\n", "ID", wsaga, "SAGA", wstatus, "STATUS",
               wsince, "SINCE", "REASON");
        json_array_foreach(rows, i, row)
        {
            char reason[700];
            const char *st = str(row, "status");
            snprintf(saga, sizeof saga, "%s@%lld", str(row, "name"),
                     (long long)json_integer_value(json_object_get(row, "version")));
            format_when(str(row, "since"), now, 0, when, sizeof when);
            describe(row, 0, reason, sizeof reason);
            printf("%-36s  %-*s  %s%-*s%s  %-*s  %s\n", str(row, "id"), wsaga, saga,
                   color_for_status(st), wstatus, st, color_reset(), wsince, when,
                   reason);
        }
    }
    {
        int any = json_array_size(rows) > 0;
        json_decref(rows);
        return any ? EXIT_REFUSED : EXIT_OK;
    }
}

/* The breaker and bulkhead of each service, as each sagad last reported. */
static void print_services(const json_t *services)
{
    size_t i;
    json_t *v;
    int wsvc = 16, winst = 16;
    if (json_array_size(services) == 0)
        return;
    json_array_foreach(services, i, v)
    {
        wsvc = widen(wsvc, str(v, "service"));
        winst = widen(winst, str(v, "instance"));
    }
    printf("\n%-*s  %-*s  %-9s  %8s  %9s  %13s  %s\n", wsvc, "service", winst, "sagad",
           "breaker", "failures", "in flight", "held brk/bulk", "reported");
    json_array_foreach(services, i, v)
    {
        char flight[32], held[48];
        long long cap = json_integer_value(json_object_get(v, "max_in_flight"));
        snprintf(flight, sizeof flight, cap > 0 ? "%lld/%lld" : "%lld",
                 (long long)json_integer_value(json_object_get(v, "in_flight")), cap);
        snprintf(held, sizeof held, "%lld/%lld",
                 (long long)json_integer_value(json_object_get(v, "held_breaker")),
                 (long long)json_integer_value(json_object_get(v, "held_bulkhead")));
        /* str(): a row with a NULL column prints "-", never a NULL %s. */
        printf("%-*s  %-*s  %-9s  %8lld  %9s  %13s  %.1fs ago\n", wsvc, str(v, "service"),
               winst, str(v, "instance"), str(v, "breaker"),
               (long long)json_integer_value(json_object_get(v, "consecutive_failures")),
               flight, held,
               json_number_value(json_object_get(v, "reported_seconds_ago")));
    }
}

/* The counts and the services, as the console reads them
 * (saga_attention.h), with the failed sagas' count on top. */
static json_t *stats_json(PGconn *db)
{
    char *counts = NULL, *services = NULL;
    saga_error err = {0};
    json_t *st, *sv;
    if (saga_read_counts(db, &counts, &err) != SAGA_OK ||
        saga_read_service_health(db, &services, &err) != SAGA_OK) {
        fprintf(stderr, "sagactl stats: %s\n", err.message);
        free(counts);
        PQfinish(db);
        exit(EXIT_DB);
    }
    st = saga__json_from_pg(counts, 0, NULL);
    sv = saga__json_from_pg(services, JSON_DECODE_ANY, NULL);
    free(counts);
    free(services);
    if (st == NULL || sv == NULL) {
        fprintf(stderr, "sagactl stats: unreadable answer\n");
        json_decref(st);
        json_decref(sv);
        PQfinish(db);
        exit(EXIT_DB);
    }
    json_object_set_new(st, "failed",
                        json_integer(json_integer_value(json_object_get(
                            json_object_get(st, "by_status"), "failed"))));
    json_object_set_new(st, "services", sv);
    return st;
}

int cmd_stats(int argc, char **argv)
{
    static const char *const statuses[] = {"running",     "compensating", "completed",
                                           "compensated", "failed",       "resolved"};
    json_t *st, *by_def, *counts;
    const char *name;
    int wname = 16;
    PGconn *db;

    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    for (int c; (c = sagactl_getopt("stats", argc, argv, opts)) != -1;) {
        if (c == 'j')
            want_json = 1;
        else {
            printf("usage: sagactl stats [--json]\nCounts of sagas by status and by "
                   "definition, and sagas started and finished\nin the last minute and "
                   "hour.\n");
            return EXIT_OK;
        }
    }
    if (optind < argc)
        die_usage("stats: unexpected argument \"%s\"", argv[optind]);
    db = connect_db(1);
    st = stats_json(db);
    PQfinish(db);
    if (want_json) {
        print_json(st);
        json_decref(st);
        return EXIT_OK;
    }
    by_def = json_object_get(st, "by_definition");
    json_object_foreach(by_def, name, counts) wname = widen(wname, name);
    printf("%-*s", wname, "");
    for (size_t i = 0; i < 6; i++)
        printf("  %12s", statuses[i]);
    printf("\n%-*s", wname, "all");
    for (size_t i = 0; i < 6; i++)
        printf("  %12lld", (long long)json_integer_value(json_object_get(
                               json_object_get(st, "by_status"), statuses[i])));
    printf("\n");
    json_object_foreach(by_def, name, counts)
    {
        printf("%-*s", wname, name);
        for (size_t i = 0; i < 6; i++)
            printf("  %12lld",
                   (long long)json_integer_value(json_object_get(counts, statuses[i])));
        printf("\n");
    }
    printf("\nstarted   last minute %lld, last hour %lld\n",
           (long long)json_integer_value(
               json_object_get(json_object_get(st, "started"), "last_minute")),
           (long long)json_integer_value(
               json_object_get(json_object_get(st, "started"), "last_hour")));
    printf("finished  last minute %lld, last hour %lld\n",
           (long long)json_integer_value(
               json_object_get(json_object_get(st, "finished"), "last_minute")),
           (long long)json_integer_value(
               json_object_get(json_object_get(st, "finished"), "last_hour")));
    print_services(json_object_get(st, "services"));
    json_decref(st);
    return EXIT_OK;
}

/* ---- list ---- */

/* $1 status, $2 name, $3 limit, $4 started within ms, $5 started before ms
 * ($6 the business key, in key_sql).
 * One index range per status, newest first, each stopping after $3 rows,
 * then merged: (status, created_at) or (name, status, created_at) answers
 * every filter without sorting all matches, however rare the combination. */
#define LIST_ROW                                                                         \
    "SELECT coalesce(json_agg(x.j ORDER BY x.ts DESC), '[]') FROM ("                     \
    " SELECT json_build_object('id', s.id, 'name', s.name, 'version', s.version,"        \
    "  'status', s.status, 'step', s.cursor_step, 'step_name', st.name,"                 \
    "  'business_key', s.business_key,"                                                  \
    "  'created_at', saga.iso(s.created_at), 'updated_at', saga.iso(s.updated_at),"      \
    "  'idle_seconds', round(extract(epoch FROM now() - s.updated_at)::numeric, 3)) AS " \
    "j,"                                                                                 \
    "  s.created_at AS ts"
static const char list_sql[] = LIST_ROW
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

/* Sagas scheduled to start later (start requests not yet due), soonest
 * first; $1 name, $2 limit, $3 business key. */
static const char scheduled_sql[] =
    "SELECT coalesce(json_agg(json_build_object('id', r.id, 'name', r.name,"
    " 'status', 'scheduled', 'start_at', saga.iso(r.start_at),"
    " 'business_key', r.business_key, 'requested_at', saga.iso(r.requested_at))"
    " ORDER BY r.start_at), '[]') FROM (SELECT * FROM saga.start_request"
    " WHERE processed_at IS NULL AND start_at > now()"
    " AND ($3::text IS NULL OR business_key = $3)"
    " AND ($1::text IS NULL OR name = $1)"
    " ORDER BY coalesce(start_at, requested_at) LIMIT $2::int) r";

/* With a business key: that key's index range, newest first. */
static const char key_sql[] = LIST_ROW
    " FROM saga.saga s LEFT JOIN saga.saga_step st ON st.saga_id = s.id"
    "  AND st.idx = s.cursor_step"
    " WHERE s.business_key = $6 AND ($1::text IS NULL OR s.status = $1)"
    "  AND ($2::text IS NULL OR s.name = $2)"
    "  AND ($4::bigint IS NULL OR s.created_at >= now() - $4::bigint * interval '1 ms')"
    "  AND ($5::bigint IS NULL OR s.created_at < now() - $5::bigint * interval '1 ms')"
    " ORDER BY s.created_at DESC, s.id DESC LIMIT $3::int) x";

/* `list --status scheduled`: when each starts. */
static int print_scheduled(json_t *rows, double now)
{
    size_t i;
    json_t *row;
    if (want_json) {
        print_json(rows);
    } else if (json_array_size(rows) == 0) {
        printf("(no sagas scheduled)\n");
    } else {
        printf("%-36s  %-20s  %s\n", "ID", "SAGA", "STARTS");
        json_array_foreach(rows, i, row)
        {
            char when[96];
            format_when(str(row, "start_at"), now, 0, when, sizeof when);
            printf("%-36s  %-20s  %s\n", str(row, "id"), str(row, "name"), when);
        }
    }
    json_decref(rows);
    return EXIT_OK;
}

int cmd_list(int argc, char **argv)
{
    const char *status = NULL, *name = NULL, *since = NULL, *older = NULL, *key = NULL;
    char since_ms[32], older_ms[32], limit[32] = "50";
    const char *p[6];
    int keys = 0;
    json_t *rows, *row;
    size_t i;
    double now;
    PGconn *db;

    static const struct option opts[] = {{"status", required_argument, NULL, 's'},
                                         {"saga", required_argument, NULL, 'n'},
                                         {"key", required_argument, NULL, 'k'},
                                         {"limit", required_argument, NULL, 'l'},
                                         {"since", required_argument, NULL, 'S'},
                                         {"older-than", required_argument, NULL, 'o'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    for (int c; (c = sagactl_getopt("list", argc, argv, opts)) != -1;) {
        if (c == 's') {
            saga_status st;
            status = optarg;
            if (strcmp(status, "scheduled") != 0 &&
                (saga_status_parse(status, &st) != 0 || st == SAGA_ST_NEW))
                die_usage(
                    "list: unknown status \"%s\" (running, compensating, completed, "
                    "compensated, failed, resolved; scheduled: not started yet)",
                    status);
        } else if (c == 'n') {
            name = optarg;
        } else if (c == 'k') {
            if (*optarg == '\0' || strlen(optarg) > 200)
                die_usage("list: --key is a business key of 1 to 200 bytes");
            key = optarg;
        } else if (c == 'l') {
            long n = parse_number("list", "--limit", optarg, 1, 100000);
            snprintf(limit, sizeof limit, "%ld", n);
        } else if (c == 'S') {
            int64_t ms = parse_duration_opt("list", "--since", optarg, "10m or 2h");
            snprintf(since_ms, sizeof since_ms, "%lld", (long long)ms);
            since = since_ms;
        } else if (c == 'o') {
            int64_t ms = parse_duration_opt("list", "--older-than", optarg, "10m or 2h");
            snprintf(older_ms, sizeof older_ms, "%lld", (long long)ms);
            older = older_ms;
        } else if (c == 'j') {
            want_json = 1;
        } else {
            printf("usage: sagactl list [--status S] [--saga NAME] [--key KEY] [--since "
                   "DUR] [--older-than DUR] [--limit N] [--json]\n"
                   "Lists sagas, newest first: --since 1h started in the last hour,\n"
                   "--older-than 10m started more than ten minutes ago, --key those\n"
                   "started with that business key; --status scheduled: those to start "
                   "later.\n");
            return EXIT_OK;
        }
    }
    if (optind < argc)
        die_usage("list: unexpected argument \"%s\"", argv[optind]);
    p[0] = status;
    p[1] = name;
    p[2] = limit;
    p[3] = since;
    p[4] = older;
    p[5] = key;
    db = connect_db(1);
    if (status != NULL && strcmp(status, "scheduled") == 0) {
        const char *q[3] = {name, limit, key};
        rows = query_json(db, scheduled_sql, 3, q);
        now = db_now(db);
        PQfinish(db);
        return print_scheduled(rows, now);
    }
    rows = key != NULL ? query_json(db, key_sql, 6, p) : query_json(db, list_sql, 5, p);
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
            keys |= json_is_string(json_object_get(row, "business_key"));
        }
        printf("%-36s  %-*s  %-*s  %-*s  %-*s%s\n", "ID", wsaga, "SAGA", wstatus,
               "STATUS", wstep, "STEP", keys ? 14 : 0, "UPDATED", keys ? "  KEY" : "");
        json_array_foreach(rows, i, row)
        {
            char saga[300], when[96];
            const char *st = str(row, "status");
            snprintf(saga, sizeof saga, "%s@%lld", str(row, "name"),
                     (long long)json_integer_value(json_object_get(row, "version")));
            format_when(str(row, "updated_at"), now, 0, when, sizeof when);
            printf("%-36s  %-*s  %s%-*s%s  %-*s  %-*s%s%s\n", str(row, "id"), wsaga, saga,
                   color_for_status(st), wstatus, st, color_reset(), wstep,
                   str(row, "step_name"), keys ? 14 : 0, when, keys ? "  " : "",
                   keys ? str(row, "business_key") : "");
        }
    }
    json_decref(rows);
    return EXIT_OK;
}
