/* sagactl retry / compensate / skip / resolve: operator repairs. Each goes
 * through the state machine and the store exactly like sagad's own
 * transitions — the saga row is locked (FOR UPDATE), the event applied,
 * state, history and commands written in one transaction, sagad woken to
 * send — so it is safe while sagad runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pwd.h>
#include <unistd.h>

#include "saga/saga.h"
#include "saga_machine.h"
#include "saga_store.h"
#include "sagactl.h"

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
    const char *id = NULL, *reason = NULL, *as = getenv("USER"), *step_name = NULL;
    const char *output_text = NULL;
    char actor[160];
    json_t *output = NULL;
    saga_defs *defs;
    saga_state *s = NULL;
    saga_actions acts = {0};
    saga_outbox sent = {0};
    saga_error err = {0};
    const char *why = NULL;
    int rc, step = -1, exit_code = EXIT_OK;
    PGconn *db;

    for (int k = 1; k < argc; k++) {
        if (strcmp(argv[k], "--reason") == 0)
            reason = opt_value(rp->name, argc, argv, &k);
        else if (strcmp(argv[k], "--as") == 0)
            as = opt_value(rp->name, argc, argv, &k);
        else if ((strcmp(argv[k], "--step") == 0 || strcmp(argv[k], "--output") == 0) &&
                 rp->kind != SAGA_EV_OP_SKIP)
            die_usage("%s: %s is for skip only", rp->name, argv[k]);
        else if (strcmp(argv[k], "--step") == 0)
            step_name = opt_value(rp->name, argc, argv, &k);
        else if (strcmp(argv[k], "--output") == 0)
            output_text = opt_value(rp->name, argc, argv, &k);
        else if (strcmp(argv[k], "--json") == 0)
            want_json = 1;
        else if (strcmp(argv[k], "--help") == 0) {
            printf("usage: sagactl %s ID %s--reason TEXT [--as NAME]\n%s\n"
                   "The operator (--as, else $USER) and the reason go into the saga's "
                   "history.\n",
                   rp->name,
                   rp->kind == SAGA_EV_OP_SKIP ? "--step NAME [--output JSON] " : "",
                   rp->help);
            return EXIT_OK;
        } else if (argv[k][0] == '-')
            die_usage("%s: unknown option \"%s\"", rp->name, argv[k]);
        else if (id == NULL)
            id = argv[k];
        else
            die_usage("%s: unexpected argument \"%s\" (one saga ID at a time)", rp->name,
                      argv[k]);
    }
    if (id == NULL)
        die_usage("%s: missing the saga ID", rp->name);
    check_uuid(rp->name, id);
    if (reason == NULL || *reason == '\0')
        die_usage("%s: --reason is required: say why, for the history", rp->name);
    if (as == NULL || *as == '\0') {
        /* No $USER (cron, containers): the login name of this uid. */
        struct passwd *pw = getpwuid(geteuid());
        as = pw != NULL ? pw->pw_name : NULL;
    }
    if (as == NULL || *as == '\0')
        die_usage("%s: say who you are with --as NAME ($USER is not set)", rp->name);
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
    snprintf(actor, sizeof actor, "operator:%.140s", as);

    db = connect_db(1);
    defs = saga_defs_new();
    rc = saga_store_exec(db, "BEGIN", &err);
    if (rc == SAGA_OK)
        rc = saga_store_load(db, defs, id, &s, &err);
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
                         .actor = as,
                         .reason = reason,
                         .step = step,
                         .output = output};
        saga_store_opts so = {getenv("SAGA_TOPIC_PREFIX"), actor};
        int applied = saga_machine_apply(s, &ev, &acts, &why);
        if (applied == SAGA_APPLIED) {
            rc = saga_store_save(db, s, &acts, &so, &sent, &err);
            /* Wake sagad's outbox relay for the commands just written. */
            if (rc == SAGA_OK && sent.n > 0)
                rc = saga_store_exec(db, "NOTIFY saga_outbox", &err);
            if (rc == SAGA_OK)
                rc = saga_store_exec(db, "COMMIT", &err);
        } else if (applied == SAGA_ENOMEM) {
            rc = saga_error_set(&err, SAGA_ENOMEM, "out of memory");
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
