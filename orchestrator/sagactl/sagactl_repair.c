/* sagactl retry / compensate / skip / resolve: operator repairs. Each goes
 * through the state machine and the store exactly like sagad's own
 * transitions — the saga row is locked (FOR UPDATE), the event applied,
 * state, history and commands written in one transaction, sagad woken to
 * send — so it is safe while sagad runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "saga/saga.h"
#include "saga_machine.h"
#include "saga_batch.h"
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

static int run_repair(const repair *rp, int argc, char **argv)
{
    const char *id = NULL, *reason = NULL, *as = NULL, *step_name = NULL;
    const char *output_text = NULL;
    char actor[160], role[130];
    json_t *output = NULL;
    saga_defs *defs;
    saga_state *s = NULL;
    saga_actions acts = {0};
    saga_outbox sent = {0};
    saga_error err = {0};
    const char *why = NULL;
    int rc, step = -1, exit_code = EXIT_OK;
    PGconn *db;
    saga_batch *batch;
    saga_store_opts so;
    char ids[1][SAGA_ID_LEN + 1];

    static const struct option opts[] = {{"reason", required_argument, NULL, 'r'},
                                         {"as", required_argument, NULL, 'a'},
                                         {"step", required_argument, NULL, 's'},
                                         {"output", required_argument, NULL, 'o'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    for (int c; (c = sagactl_getopt(rp->name, argc, argv, opts)) != -1;) {
        if ((c == 's' || c == 'o') && rp->kind != SAGA_EV_OP_SKIP)
            die_usage("%s: %s is for skip only", rp->name,
                      c == 's' ? "--step" : "--output");
        else if (c == 'r')
            reason = optarg;
        else if (c == 'a')
            as = optarg;
        else if (c == 's')
            step_name = optarg;
        else if (c == 'o')
            output_text = optarg;
        else if (c == 'j')
            want_json = 1;
        else {
            printf("usage: sagactl %s ID %s--reason TEXT [--as TEXT]\n%s\n"
                   "The operator (the database role sagactl logs in as), the reason and\n"
                   "--as (free text: on whose behalf) go into the saga's history.\n",
                   rp->name,
                   rp->kind == SAGA_EV_OP_SKIP ? "--step NAME [--output JSON] " : "",
                   rp->help);
            return EXIT_OK;
        }
    }
    if (optind + 1 < argc)
        die_usage("%s: unexpected argument \"%s\" (one saga ID at a time)", rp->name,
                  argv[optind + 1]);
    id = optind < argc ? argv[optind] : NULL;
    if (id == NULL)
        die_usage("%s: missing the saga ID", rp->name);
    check_uuid(rp->name, id);
    if (reason == NULL || *reason == '\0')
        die_usage("%s: --reason is required: say why, for the history", rp->name);
    if (rp->kind == SAGA_EV_OP_SKIP && step_name == NULL)
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
    /* Who did it is who the database let in, not what anyone types: the
     * role this connection authenticated as (a trigger on the history
     * stamps it again, for rows written by other means). */
    {
        PGresult *who = PQexec(db, "SELECT session_user");
        if (PQresultStatus(who) != PGRES_TUPLES_OK || PQntuples(who) != 1) {
            fprintf(stderr, "sagactl %s: reading the database role: %s", rp->name,
                    PQerrorMessage(db));
            PQclear(who);
            PQfinish(db);
            json_decref(output);
            return EXIT_DB;
        }
        snprintf(role, sizeof role, "%s", PQgetvalue(who, 0, 0));
        PQclear(who);
    }
    snprintf(actor, sizeof actor, "operator:%.140s", role);
    defs = saga_defs_new();
    /* The one writer of sagas, steps, history and outbox (sagad's): the
     * outbox rows are nobody's, so whichever sagad sees them sends them. */
    so.topic_prefix = getenv("SAGA_TOPIC_PREFIX");
    so.actor = actor;
    batch = saga_batch_new(&so, NULL, 0);
    for (int i = 0; i <= SAGA_ID_LEN; i++) /* PostgreSQL prints UUIDs in lower case */
        ids[0][i] = (char)(id[i] >= 'A' && id[i] <= 'F' ? id[i] - 'A' + 'a' : id[i]);
    if (batch == NULL)
        rc = saga__error_set(&err, SAGA_ENOMEM, "out of memory");
    else
        rc = saga_batch_prepare(db, &err);
    if (rc == SAGA_OK)
        rc = saga_batch_load(db, defs, ids, 1, 1, &s, NULL, &err);
    if (rc == SAGA_OK && s == NULL)
        rc = saga__error_set(&err, SAGA_ENOTFOUND, "no saga %s", id);
    if (rc == SAGA_OK && step_name != NULL) {
        step = saga_definition_step_index(s->def, step_name);
        if (step < 0) {
            fprintf(stderr, "sagactl %s: saga %s (%s) has no step \"%s\"\n", rp->name, id,
                    s->def->name, step_name);
            exit_code = EXIT_REFUSED;
        }
    }
    if (rc == SAGA_OK && exit_code == EXIT_OK) {
        saga_event ev = {.kind = rp->kind,
                         .now = saga_now_ms(),
                         .random = (double)rand() / ((double)RAND_MAX + 1.0),
                         .actor = role,
                         .on_behalf_of = as,
                         .reason = reason,
                         .step = step,
                         .output = output};
        int applied = saga_machine_apply(s, &ev, &acts, &why);
        if (applied == SAGA_APPLIED) {
            int sends = 0;
            for (int i = 0; i < acts.n; i++)
                sends += acts.items[i].kind == SAGA_ACT_SEND;
            rc = saga_batch_add(batch, s, &acts, 0, &err);
            /* Wake sagad's outbox relay for the commands written (NOTIFY
             * is delivered when the transaction commits). */
            if (rc == SAGA_OK && sends > 0)
                rc = saga_store_exec(db, "NOTIFY saga_outbox", &err);
            if (rc == SAGA_OK)
                rc = saga_batch_commit(db, batch, &sent, &err);
        } else if (applied == SAGA_ENOMEM) {
            rc = saga__error_set(&err, SAGA_ENOMEM, "out of memory");
        } else {
            fprintf(stderr, "sagactl %s: refused: %s (saga %s is %s)\n", rp->name,
                    why ? why : "not applicable", id, saga_status_name(s->status));
            exit_code = EXIT_REFUSED;
        }
    }
    if (rc != SAGA_OK || exit_code != EXIT_OK)
        saga_store_exec(db, "ROLLBACK", NULL);
    if (rc == SAGA_ENOTFOUND) {
        fprintf(stderr, "sagactl %s: no saga %s\n", rp->name, id);
        exit_code = EXIT_REFUSED;
    } else if (rc != SAGA_OK) {
        fprintf(stderr, "sagactl %s: %s\n", rp->name, err.message);
        exit_code = EXIT_DB;
    } else if (exit_code == EXIT_OK) {
        const saga_step_state *st = &s->steps[s->cursor];
        if (want_json)
            printf(
                "{\"id\": \"%s\", \"status\": \"%s\", \"step\": \"%s\", \"step_status\": "
                "\"%s\", \"commands_sent\": %d}\n",
                id, saga_status_name(s->status), s->def->steps[s->cursor].name,
                saga_step_status_name(st->status), sent.n);
        else
            printf("%s: saga %s is now %s%s%s at step %s (%s)%s\n", rp->name, id,
                   color_for_status(saga_status_name(s->status)),
                   saga_status_name(s->status), color_reset(),
                   s->def->steps[s->cursor].name, saga_step_status_name(st->status),
                   sent.n > 0 ? "; command sent" : "");
    }
    saga_actions_clear(&acts);
    saga_outbox_clear(&sent);
    saga_state_free(s);
    saga_batch_free(batch);
    saga_defs_free(defs);
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
