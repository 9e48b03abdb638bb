/* sagactl_show.c - following one saga: `show` (its steps), `history` (its
 * timeline, with span ids) and `wait` (until it ends); an id that is still
 * a start request is told apart from one that does not exist. */
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
#include "saga_read.h"
#include "saga_migrate.h"
#include "saga_shared.h"
#include "saga_store.h"
#include "saga_tracing.h"
#include "sagactl.h"

/* ---- show ---- */

/* A saga with its steps, as one JSON object (NULL row: no such saga). */
static const char show_sql[] =
    "SELECT json_build_object('id', s.id, 'name', s.name, 'version', s.version,"
    " 'status', s.status, 'step', s.cursor_step, 'input', s.input,"
    " 'idempotency_key', s.idempotency_key, 'business_key', s.business_key,"
    " 'created_at', saga.iso(s.created_at),"
    " 'updated_at', saga.iso(s.updated_at), 'deadline_at', saga.iso(s.deadline_at),"
    " 'wake_at', saga.iso(s.wake_at), 'traceparent', s.traceparent,"
    " 'trace_id', split_part(s.traceparent, '-', 2)," SAGA_READ_SAGA_LINKS_AND_STEPS
    " FROM saga.saga s WHERE s.id = $1";

/* ---- an id with no saga: its start request ---- */

/* The start request of id as one JSON object (NULL row: none). status
 * is pending (sagad has not taken it yet), rejected (error says why) or
 * processed (it became a saga). */
static const char request_sql[] =
    "SELECT json_build_object('id', id, 'name', name,"
    " 'status', CASE WHEN cancelled_at IS NOT NULL THEN 'cancelled'"
    "  WHEN error IS NOT NULL THEN 'rejected'"
    "  WHEN processed_at IS NULL AND start_at > now() THEN 'scheduled'"
    "  WHEN processed_at IS NULL THEN 'pending' ELSE 'processed' END,"
    " 'start_at', saga.iso(start_at), 'cancelled_at', saga.iso(cancelled_at),"
    " 'cancelled_by', cancelled_by,"
    " 'input', input, 'idempotency_key', idempotency_key, 'business_key', business_key,"
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
    else if (strcmp(status, "scheduled") == 0)
        fprintf(stderr,
                "sagactl %s: saga %s is scheduled, not started yet (%s, from %s; "
                "`sagactl show %s` says when)\n",
                cmd, id, str(req, "name"), when, id);
    else if (strcmp(status, "cancelled") == 0)
        fprintf(stderr, "sagactl %s: saga %s was cancelled before it started: %s\n", cmd,
                id, str(req, "error"));
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
        if (strcmp(status, "pending") == 0) {
            printf("status    pending: requested but not started yet (waiting for "
                   "sagad)\n");
        } else if (strcmp(status, "scheduled") == 0) {
            format_when(str(req, "start_at"), now, 0, when, sizeof when);
            printf("status    scheduled: starts %s (sagactl cancel ID --reason T "
                   "cancels it)\n",
                   when);
        } else if (strcmp(status, "cancelled") == 0) {
            format_when(str(req, "cancelled_at"), now, 0, when, sizeof when);
            printf("status    cancelled %s: %s\n", when, str(req, "error"));
        } else
            printf("status    rejected: its start request was refused: %s\n",
                   str(req, "error"));
        format_when(str(req, "requested_at"), now, 0, when, sizeof when);
        printf("requested %s\n", when);
        if (json_is_string(json_object_get(req, "idempotency_key")))
            printf("key       %s\n", str(req, "idempotency_key"));
        if (json_is_string(json_object_get(req, "business_key")))
            printf("business  %s (business key)\n", str(req, "business_key"));
        {
            char *in = json_dumps(json_object_get(req, "input"), JSON_COMPACT);
            printf("input     %s\n", in ? in : "{}");
            free(in);
        }
    }
    return strcmp(status, "pending") == 0 || strcmp(status, "scheduled") == 0
               ? EXIT_OK
               : EXIT_REFUSED;
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

int cmd_show(int argc, char **argv)
{
    const char *id = NULL;
    json_t *saga, *steps, *st, *req;
    size_t i;
    double now;
    int wname = 4, wstatus = 6, wstart = 7, wfinish = 8;
    char when[96];
    PGconn *db;

    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    for (int c; (c = sagactl_getopt("show", argc, argv, opts)) != -1;) {
        if (c == 'j')
            want_json = 1;
        else {
            printf(
                "usage: sagactl show ID [--json]\nShows a saga: definition and version, "
                "status, input, and each step with status, attempts, times, output or "
                "error.\nAn id whose start request sagad has not turned into a saga yet "
                "shows as pending;\none it rejected, as rejected with the reason "
                "(exit 1).\n");
            return EXIT_OK;
        }
    }
    id = sagactl_operand("show", argc, argv);
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
        if (strcmp(rs, "pending") == 0 || strcmp(rs, "rejected") == 0 ||
            strcmp(rs, "scheduled") == 0 || strcmp(rs, "cancelled") == 0)
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
    if (json_is_object(json_object_get(saga, "parent")))
        printf("parent    %s (its step %lld started this saga)\n",
               str(json_object_get(saga, "parent"), "id"),
               (long long)json_integer_value(
                   json_object_get(json_object_get(saga, "parent"), "step")));
    format_when(str(saga, "created_at"), now, 0, when, sizeof when);
    printf("created   %s\n", when);
    format_when(str(saga, "updated_at"), now, 0, when, sizeof when);
    printf("updated   %s\n", when);
    if (json_is_string(json_object_get(saga, "wake_at"))) {
        format_when(str(saga, "wake_at"), now, 0, when, sizeof when);
        printf("next      %s (a timeout or retry)\n", when);
    }
    if (json_is_string(json_object_get(saga, "business_key")))
        printf("business  %s (business key)\n", str(saga, "business_key"));
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
        json_t *res = json_object_get(st, "error"),
               *els = json_object_get(st, "elements");
        char *t, started[96];
        if (json_is_null(res) || res == NULL || !error_belongs(str(st, "status")))
            res = json_object_get(st, "output");
        t = (res && !json_is_null(res)) ? json_dumps(res, JSON_COMPACT) : NULL;
        if (json_is_object(els)) {
            /* A fan-out: its elements by status (their outputs are in the
             * history; the list may be long). */
            const char *k;
            json_t *v;
            char line[512];
            size_t len = 0;
            json_int_t total = 0;
            json_object_foreach(els, k, v) total += json_integer_value(v);
            len +=
                (size_t)snprintf(line, sizeof line, "%lld elements:", (long long)total);
            json_object_foreach(els, k, v) if (len < sizeof line) len +=
                (size_t)snprintf(line + len, sizeof line - len, " %lld %s",
                                 (long long)json_integer_value(v), k);
            if (t != NULL && error_belongs(str(st, "status")) &&
                res == json_object_get(st, "error") && len < sizeof line)
                snprintf(line + len, sizeof line - len, "; %s", t);
            free(t);
            t = strdup(line);
        }
        format_when(str(st, "started_at"), now, 0, started, sizeof started);
        format_when(str(st, "finished_at"), now, 0, when, sizeof when);
        printf("%3lld  %-*s  %-*s  %3lld  %-*s  %-*s  %s\n",
               (long long)json_integer_value(json_object_get(st, "index")), wname,
               str(st, "name"), wstatus, str(st, "status"),
               (long long)json_integer_value(json_object_get(st, "attempts")), wstart,
               started, wfinish, when, t ? t : "");
        free(t);
    }
    {
        int first = 1;
        json_array_foreach(steps, i, st)
        {
            json_t *child = json_object_get(st, "child");
            if (!json_is_object(child))
                continue;
            printf("%sstep %s: child saga %s (%s), %s\n", first ? "\n" : "",
                   str(st, "name"), str(child, "id"), str(child, "definition"),
                   str(child, "status"));
            first = 0;
        }
    }
    json_decref(saga);
    return EXIT_OK;
}

/* ---- history ---- */

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

int cmd_history(int argc, char **argv)
{
    const char *id = NULL;
    char traceparent[SAGA_TRACEPARENT_LEN + 1] = "";
    json_t *events = NULL, *ev, *req;
    size_t i;
    double now;
    PGconn *db;

    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    for (int c; (c = sagactl_getopt("history", argc, argv, opts)) != -1;) {
        if (c == 'j')
            want_json = 1;
        else {
            printf("usage: sagactl history ID [--json]\nThe saga's timeline: every "
                   "transition "
                   "with time, step, attempt, details and actor.\n");
            return EXIT_OK;
        }
    }
    id = sagactl_operand("history", argc, argv);
    if (id == NULL)
        die_usage("history: missing the saga %s", "ID");
    check_uuid("history", id);
    db = connect_db(1);
    {
        saga_error err = {0};
        const char *p[1] = {id};
        PGresult *r;
        int rc = saga_read_history(db, id, NULL, &events, &err);
        if (rc != SAGA_OK && rc != SAGA_ENOTFOUND) {
            fprintf(stderr, "sagactl history: %s\n", err.message);
            PQfinish(db);
            return EXIT_DB;
        }
        /* For the header: the saga's own span. */
        r = PQexecParams(db, "SELECT traceparent FROM saga.saga WHERE id = $1", 1, NULL,
                         p, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
            snprintf(traceparent, sizeof traceparent, "%s", PQgetvalue(r, 0, 0));
        } else if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            /* A start request not yet a saga reads as [] (for the API):
             * here it is said as such. */
            json_decref(events);
            events = NULL;
        }
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

int cmd_wait(int argc, char **argv)
{
    const char *id = NULL;
    int64_t timeout = 60000, until;
    PGconn *db;

    static const struct option opts[] = {{"timeout", required_argument, NULL, 't'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    for (int c; (c = sagactl_getopt("wait", argc, argv, opts)) != -1;) {
        if (c == 't') {
            timeout = parse_duration_opt("wait", "--timeout", optarg, "30s or 2m");
        } else if (c == 'j') {
            want_json = 1;
        } else {
            printf(
                "usage: sagactl wait ID [--timeout DUR] [--json]\n"
                "Waits (default 60s) until the saga is completed, compensated, failed "
                "or\nresolved and prints that status.\n"
                "Exit 0 when it ended completed or compensated; 1 when it ended failed "
                "or\nresolved, is not found, or is still going at the timeout. A saga "
                "requested but\nnot created by sagad yet is waited for; a rejected "
                "request prints rejected\n(exit 1).\n");
            return EXIT_OK;
        }
    }
    id = sagactl_operand("wait", argc, argv);
    if (id == NULL)
        die_usage("wait: missing the saga %s", "ID");
    check_uuid("wait", id);
    db = connect_db(1);
    until = saga_now_ms() + timeout;
    for (;;) {
        const char *p[1] = {id};
        /* A start request not yet taken by sagad is waited for like a saga
         * (pending); one it rejected ends the wait, and so does an id with
         * neither (or one row security hides: another caller's). */
        PGresult *r = PQexecParams(
            db,
            "SELECT coalesce(s.status, CASE WHEN r.error IS NOT NULL THEN 'rejected'"
            " WHEN r.id IS NOT NULL AND r.processed_at IS NULL THEN 'pending' END)"
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
