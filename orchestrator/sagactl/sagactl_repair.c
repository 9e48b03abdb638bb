/* sagactl retry / compensate / skip / resolve: operator repairs, of one saga
 * or (--all) of every saga some filters match (saga_repair.h). Each goes
 * through the state machine and the store exactly like sagad's own
 * transitions — the saga row is locked (FOR UPDATE), the event applied,
 * state, history and commands written in one transaction, sagad woken to
 * send — so it is safe while sagad runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "saga/saga.h"
#include "saga_machine.h"
#include "saga_repair.h"
#include "saga_store.h"
#include "sagactl.h"
#include "saga_shared.h"

typedef struct repair {
    const char *name; /* the command */
    saga_event_kind kind;
    const char *help;
} repair;

static const repair repairs[] = {
    {"retry", SAGA_EV_OP_RETRY,
     "Re-sends the saga's outstanding step or compensation now, with a fresh attempt\n"
     "budget. A failed (stuck) saga goes back to compensating (or running, after a\n"
     "pivot)."},
    {"compensate", SAGA_EV_OP_COMPENSATE,
     "Aborts a running saga and compensates what it did, in reverse order (the step\n"
     "in flight included). Refused past a pivot."},
    {"skip", SAGA_EV_OP_SKIP,
     "Marks the saga's current step done by hand, with --output as its output, and\n"
     "moves on; or, during compensation, marks the current compensation done."},
    {"resolve", SAGA_EV_OP_RESOLVE,
     "Closes a failed saga as resolved by hand (nothing is sent)."},
};

/* Who did it is who the database let in, not what anyone types: the
 * role this connection authenticated as (a trigger on the history stamps
 * it again, for rows written by other means). */
static int session_role(PGconn *db, const char *cmd, char *role, size_t size)
{
    PGresult *who = PQexec(db, "SELECT session_user");
    int ok = PQresultStatus(who) == PGRES_TUPLES_OK && PQntuples(who) == 1;
    if (ok)
        snprintf(role, size, "%s", PQgetvalue(who, 0, 0));
    else
        fprintf(stderr, "sagactl %s: reading the database role: %s", cmd,
                PQerrorMessage(db));
    PQclear(who);
    return ok ? 0 : -1;
}

static void print_result(const repair *rp, const saga_repair_result *r)
{
    if (want_json)
        printf("{\"id\": \"%s\", \"status\": \"%s\", \"step\": \"%s\", \"step_status\": "
               "\"%s\", \"commands_sent\": %d}\n",
               r->id, r->status, r->step, r->step_status, r->commands_sent);
    else
        printf("%s: saga %s is now %s%s%s at step %s (%s)%s\n", rp->name, r->id,
               color_for_status(r->status), r->status, color_reset(), r->step,
               r->step_status, r->commands_sent > 0 ? "; command sent" : "");
}

/* ---- --all: every saga a filter matches ---- */

typedef struct bulk_report {
    const repair *rp;
    int refused;
} bulk_report;

static void report_one(void *arg, const saga_repair_result *r)
{
    bulk_report *b = arg;
    if (r->outcome == SAGA_REPAIR_DONE) {
        print_result(b->rp, r);
    } else if (r->outcome == SAGA_REPAIR_REFUSED) {
        b->refused++;
        if (want_json)
            printf("{\"id\": \"%s\", \"refused\": \"%s\", \"status\": \"%s\"}\n", r->id,
                   r->why, r->status);
        else
            fprintf(stderr, "sagactl %s: saga %s refused: %s (it is %s)\n", b->rp->name,
                    r->id, r->why, r->status);
    }
}

/* A --since / --older-than duration as the timestamp that far back. */
static void time_back(const char *cmd, const char *opt, const char *arg, char *buf,
                      size_t size)
{
    int64_t ms = parse_duration_opt(cmd, opt, arg, "10m or 2h");
    time_t t = (time_t)((saga__wall_ms() - ms) / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int run_bulk(const repair *rp, PGconn *db, saga_repair_req *rq,
                    const saga_repair_filter *f, int dry_run, int limit)
{
    saga_error err = {0};
    int rc;
    if (dry_run) {
        long long count;
        char sample[10][SAGA_ID_LEN + 1];
        int ns;
        rc = saga_repair_count(db, f, &count, sample, 10, &ns, &err);
        if (rc != SAGA_OK) {
            fprintf(stderr, "sagactl %s: %s\n", rp->name, err.message);
            return EXIT_DB;
        }
        if (want_json) {
            printf("{\"dry_run\": true, \"matched\": %lld, \"sample\": [", count);
            for (int i = 0; i < ns; i++)
                printf("%s\"%s\"", i ? ", " : "", sample[i]);
            printf("]}\n");
        } else {
            printf("%s --all --dry-run: %lld saga%s match%s%s", rp->name, count,
                   count == 1 ? "" : "s", count == 1 ? "es" : "",
                   count > limit ? "" : "\n");
            if (count > limit)
                printf(" (one run acts on --limit %d of them)\n", limit);
            for (int i = 0; i < ns; i++)
                printf("  %s\n", sample[i]);
            if (count > ns)
                printf("  ...\n");
        }
        return EXIT_OK;
    }
    {
        bulk_report b = {rp, 0};
        int repaired, met, more;
        rc = saga_repair_matching(db, rq, f, limit, report_one, &b, &repaired, &met,
                                  &more, &err);
        if (!want_json)
            printf("%s --all: %d saga%s repaired, %d refused, of %d met%s\n", rp->name,
                   repaired, repaired == 1 ? "" : "s", b.refused, met,
                   more ? "; more match: run it again" : "");
        if (rc != SAGA_OK) {
            fprintf(stderr, "sagactl %s: %s (the batches before it stay done)\n",
                    rp->name, err.message);
            return EXIT_DB;
        }
        return b.refused > 0 ? EXIT_REFUSED : EXIT_OK;
    }
}

static int run_repair(const repair *rp, int argc, char **argv)
{
    const char *id = NULL, *output_text = NULL;
    char actor[160], role[130], since[48], older[48];
    saga_repair_req rq = {.kind = rp->kind};
    saga_repair_filter f = {0};
    saga_repair_result res;
    saga_error err = {0};
    json_t *output = NULL;
    int rc, all = 0, dry_run = 0, limit = 1000, exit_code = EXIT_OK;
    PGconn *db;

    static const struct option opts[] = {{"reason", required_argument, NULL, 'r'},
                                         {"as", required_argument, NULL, 'a'},
                                         {"step", required_argument, NULL, 's'},
                                         {"output", required_argument, NULL, 'o'},
                                         {"all", no_argument, NULL, 'A'},
                                         {"definition", required_argument, NULL, 'd'},
                                         {"saga", required_argument, NULL, 'd'},
                                         {"status", required_argument, NULL, 'S'},
                                         {"at-step", required_argument, NULL, 't'},
                                         {"key", required_argument, NULL, 'k'},
                                         {"since", required_argument, NULL, 'i'},
                                         {"older-than", required_argument, NULL, 'O'},
                                         {"limit", required_argument, NULL, 'l'},
                                         {"dry-run", no_argument, NULL, 'n'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    for (int c; (c = sagactl_getopt(rp->name, argc, argv, opts)) != -1;) {
        if ((c == 's' || c == 'o') && rp->kind != SAGA_EV_OP_SKIP)
            die_usage("%s: %s is for skip only", rp->name,
                      c == 's' ? "--step" : "--output");
        else if (c == 'A' && rp->kind == SAGA_EV_OP_SKIP)
            die_usage("skip: one saga at a time (skip --all is not offered: a step "
                      "marked done by hand needs its own output)");
        else if (c == 'r')
            rq.reason = optarg;
        else if (c == 'a')
            rq.on_behalf_of = optarg;
        else if (c == 's')
            rq.step = optarg;
        else if (c == 'o')
            output_text = optarg;
        else if (c == 'A')
            all = 1;
        else if (c == 'd')
            f.definition = optarg;
        else if (c == 'S') {
            saga_status st;
            if (saga_status_parse(optarg, &st) != 0 || st == SAGA_ST_NEW)
                die_usage("%s: unknown status \"%s\" (running, compensating, completed, "
                          "compensated, failed, resolved)",
                          rp->name, optarg);
            f.status = optarg;
        } else if (c == 't')
            f.step = optarg;
        else if (c == 'k')
            f.business_key = optarg;
        else if (c == 'i') {
            time_back(rp->name, "--since", optarg, since, sizeof since);
            f.since = since;
        } else if (c == 'O') {
            time_back(rp->name, "--older-than", optarg, older, sizeof older);
            f.older_than = older;
        } else if (c == 'l')
            limit = (int)parse_number(rp->name, "--limit", optarg, 1, 100000);
        else if (c == 'n')
            dry_run = 1;
        else if (c == 'j')
            want_json = 1;
        else {
            printf("usage: sagactl %s ID %s--reason TEXT [--as TEXT] [--json]\n",
                   rp->name,
                   rp->kind == SAGA_EV_OP_SKIP ? "--step NAME [--output JSON] " : "");
            if (rp->kind != SAGA_EV_OP_SKIP)
                printf(
                    "       sagactl %s --all [--definition NAME] [--status S] [--at-step "
                    "STEP]\n"
                    "               [--key KEY] [--since DUR] [--older-than DUR] "
                    "[--limit N]\n"
                    "               [--dry-run] --reason TEXT [--as TEXT] [--json]\n",
                    rp->name);
            printf("%s\n"
                   "The operator (the database role sagactl logs in as), the reason and\n"
                   "--as (free text: on whose behalf) go into the saga's history.\n",
                   rp->help);
            if (rp->kind != SAGA_EV_OP_SKIP)
                printf("--all acts on every saga the filters match (at least one "
                       "filter; --at-step:\nthe step it is at; --since/--older-than: "
                       "started within / before), %d per\ntransaction, at most --limit "
                       "(1000) in one run; --dry-run only counts them.\n",
                       SAGA_REPAIR_BATCH);
            return EXIT_OK;
        }
    }
    if (all) {
        if (optind < argc)
            die_usage("%s --all: unexpected argument \"%s\" (no saga ID with --all)",
                      rp->name, argv[optind]);
        if (f.definition == NULL && f.status == NULL && f.step == NULL &&
            f.business_key == NULL && f.since == NULL && f.older_than == NULL)
            die_usage("%s --all: give at least one filter (--definition, --status, "
                      "--at-step, --key, --since, --older-than)",
                      rp->name);
    } else {
        if (f.definition || f.status || f.step || f.business_key || f.since ||
            f.older_than || dry_run)
            die_usage("%s: the filters and --dry-run go with --all", rp->name);
        if (optind + 1 < argc)
            die_usage("%s: unexpected argument \"%s\" (one saga ID at a time, or --all)",
                      rp->name, argv[optind + 1]);
        id = optind < argc ? argv[optind] : NULL;
        if (id == NULL)
            die_usage("%s: missing the saga ID (or --all with filters)", rp->name);
        check_uuid(rp->name, id);
    }
    if (!dry_run && (rq.reason == NULL || *rq.reason == '\0'))
        die_usage("%s: --reason is required: say why, for the history", rp->name);
    if (rp->kind == SAGA_EV_OP_SKIP && rq.step == NULL)
        die_usage("skip: --step NAME is required: the step to mark done (see `sagactl "
                  "show`)");
    if (output_text != NULL) {
        json_error_t jerr;
        output = json_loads(output_text, 0, &jerr);
        if (!json_is_object(output))
            die_usage("skip: --output must be a JSON object: %s",
                      output ? "found another JSON value" : jerr.text);
    }
    db = connect_db(1);
    if (session_role(db, rp->name, role, sizeof role) != 0) {
        PQfinish(db);
        json_decref(output);
        return EXIT_DB;
    }
    snprintf(actor, sizeof actor, "operator:%.140s", role);
    rq.actor = actor;
    rq.operator= role;
    rq.output = output;
    /* The outbox rows are nobody's: whichever sagad sees them sends them. */
    rq.topic_prefix = getenv("SAGA_TOPIC_PREFIX");
    if (all) {
        exit_code = run_bulk(rp, db, &rq, &f, dry_run, limit);
    } else if ((rc = saga_repair_one(db, &rq, id, &res, &err)) != SAGA_OK) {
        fprintf(stderr, "sagactl %s: %s\n", rp->name, err.message);
        exit_code = EXIT_DB;
    } else if (res.outcome == SAGA_REPAIR_NOT_FOUND) {
        fprintf(stderr, "sagactl %s: no saga %s\n", rp->name, id);
        exit_code = EXIT_REFUSED;
    } else if (res.outcome == SAGA_REPAIR_REFUSED) {
        fprintf(stderr, "sagactl %s: refused: %s (saga %s is %s)\n", rp->name, res.why,
                id, res.status);
        exit_code = EXIT_REFUSED;
    } else {
        print_result(rp, &res);
    }
    json_decref(output);
    PQfinish(db);
    return exit_code;
}

int cmd_retry(int argc, char **argv)
{
    return run_repair(&repairs[0], argc, argv);
}

int cmd_compensate(int argc, char **argv)
{
    return run_repair(&repairs[1], argc, argv);
}

int cmd_skip(int argc, char **argv)
{
    return run_repair(&repairs[2], argc, argv);
}

int cmd_resolve(int argc, char **argv)
{
    return run_repair(&repairs[3], argc, argv);
}
