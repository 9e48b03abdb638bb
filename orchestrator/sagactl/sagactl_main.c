/* sagactl: the operator's command line. One table of commands drives the
 * dispatch, the usage listing and `sagactl help COMMAND`; each command
 * parses its own options with getopt_long (sagactl_getopt). Exit codes: 0
 * ok, 1 not found or refused, 2 usage, 3 cannot reach the database (or
 * schema not migrated). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sagactl.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *section; /* the heading it is listed under; NULL: as above */
    const char *args;    /* what follows the name in the listing */
    const char *summary; /* one line; NULL when args say it all */
} command;

static const command commands[] = {
    {"list", cmd_list, "Finding:",
     "[--status S] [--saga NAME] [--key KEY] [--since DUR] [--older-than DUR]\n"
     "       [--limit N]",
     NULL},
    {"stuck", cmd_stuck, NULL, "[--older-than DUR]",
     "sagas that need an operator, with why"},
    {"stats", cmd_stats, NULL, "", "counts by status and definition, rates"},
    {"show", cmd_show, "Understanding:", "ID", "a saga and its steps"},
    {"history", cmd_history, NULL, "ID", "its timeline, operator actions included"},
    {"wait", cmd_wait, NULL, "ID [--timeout DUR]",
     "wait for it to end, print its status"},
    {"retry", cmd_retry,
     "Repairing (--reason TEXT required; done as the database role; --as TEXT: for "
     "whom):",
     "ID", "re-send the outstanding step/compensation"},
    {"compensate", cmd_compensate, NULL, "ID", "abort a running saga and compensate it"},
    {"skip", cmd_skip, NULL, "ID --step NAME [--output JSON]",
     "mark the current step done by hand"},
    {"resolve", cmd_resolve, NULL, "ID", "close a failed saga by hand"},
    {NULL, NULL, NULL,
     "retry|compensate|resolve --all [--definition NAME] [--status S] [--at-step STEP]\n"
     "       [--key KEY] [--since DUR] [--older-than DUR] [--limit N] [--dry-run]",
     NULL},
    {"start", cmd_start, "Running:",
     "NAME [--input JSON|@FILE|-] [--key K] [--business-key B]\n"
     "       [--at TIME | --in DUR]",
     "start a saga (now or later), print its id"},
    {"cancel", cmd_cancel, NULL, "ID --reason TEXT", "cancel a saga not started yet"},
    {"signal", cmd_signal, NULL,
     "ID NAME [--payload JSON] [--id SIG] [--fail --reason T]",
     "send a signal to a waiting saga"},
    {"migrate", cmd_migrate, NULL, "[--dir DIR]", "apply pending schema migrations"},
    {"validate", cmd_validate, NULL, "FILE... [--json]", "check definition files"},
    {"defs", cmd_defs, NULL, "deploy FILE... | list | show NAME [--version N]",
     "stored definitions"},
    {"limits", cmd_limits, NULL, "[set NAME BYTES --reason T]",
     "the largest input, output, definition"},
    {"roles", cmd_roles, NULL, "create", "the database roles and row-level security"},
    {"tokens", cmd_tokens, NULL, "create --role R --name N | list | revoke NAME",
     "the HTTP API's bearer tokens"},
    {"purge", cmd_purge, "Keeping history:",
     "--older-than DUR [--status S] [--batch N] [--archive FILE] [--dry-run]",
     "delete finished sagas by age"},
    {"dead", cmd_dead,
     "Dead letters (what sagad set aside so that it could not stall the rest):",
     "list [--source S] [--since DUR] [--limit N] [--all] | show ID |\n"
     "       replay ID --reason TEXT | purge --older-than DUR",
     NULL},
};
enum { NCOMMANDS = sizeof commands / sizeof commands[0] };

static const command *find(const char *name)
{
    for (int i = 0; i < NCOMMANDS; i++)
        if (commands[i].name != NULL && strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: sagactl [--db URL | --db-file F] [--json] COMMAND [ARGS]\n");
    for (int i = 0; i < NCOMMANDS; i++) {
        const command *c = &commands[i];
        int w;
        if (c->section != NULL)
            fprintf(out, "%s%s\n", i == 0 ? "\n" : "", c->section);
        /* A NULL name: another form of the commands above. */
        w = fprintf(out, "  %s%s%s", c->name ? c->name : "",
                    c->name && c->args[0] ? " " : "", c->args);
        if (c->summary != NULL)
            fprintf(out, w < 38 ? "%*s%s\n" : "\n%*s%s\n", w < 38 ? 38 - w : 38, "",
                    c->summary);
        else
            fputc('\n', out);
    }
    fprintf(out, "\nOptions:\n"
                 "  --db URL    PostgreSQL (default $SAGA_PG_URL)\n"
                 "  --db-file F read the URL from file F (default $SAGA_PG_URL_FILE):\n"
                 "              a password off the command line and out of the\n"
                 "              environment; ~/.pgpass works too\n"
                 "  --json      machine-readable output (every command that reads)\n"
                 "  --help      this text; `sagactl help COMMAND` or `sagactl COMMAND "
                 "--help`\n"
                 "              for a command\n\n"
                 "Options take their value as --opt VALUE or --opt=VALUE.\n"
                 "Exit codes: 0 ok, 1 not found or refused (stuck: some found; wait: "
                 "ended\nfailed or resolved, or timed out), 2 usage, 3 database "
                 "unreachable or not\nmigrated.\n");
}

/* `sagactl help [COMMAND]`: the listing, or the command's own help. */
static int help(int argc, char **argv)
{
    const command *c;
    static char help_opt[] = "--help";
    char *args[] = {NULL, help_opt, NULL};
    if (argc < 2) {
        usage(stdout);
        return EXIT_OK;
    }
    if ((c = find(argv[1])) == NULL)
        die_usage("help: unknown command \"%s\"", argv[1]);
    args[0] = argv[1];
    optind = 0;
    return c->run(2, args);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"db", required_argument, NULL, 'd'},
                                         {"db-file", required_argument, NULL, 'f'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const command *c;
    const char *db_file = getenv("SAGA_PG_URL_FILE");
    static char *db_url_read; /* the process's until it exits */
    int o;

    db_url = getenv("SAGA_PG_URL");
    /* Repairs draw their retry jitter from rand(): unseeded, every sagactl
     * run would draw the same one. */
    srand((unsigned)time(NULL) ^ ((unsigned)getpid() << 16));
    /* Global options come before the command ("+": stop at the first
     * operand, which is the command's name). */
    opterr = 0;
    while ((o = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
        switch (o) {
        case 'd':
            db_url = optarg;
            db_file = NULL;
            break;
        case 'f':
            db_file = optarg;
            break;
        case 'j':
            want_json = 1;
            break;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        case ':':
            die_usage("%s needs a value", argv[optind - 1]);
        default:
            die_usage("unknown option \"%s\"", argv[optind - 1]);
        }
    }
    if (db_file != NULL && *db_file != '\0') {
        saga_error err = {0};
        if (saga__read_secret(db_file, &db_url_read, &err) != SAGA_OK)
            die_usage("--db-file: %s", err.message);
        db_url = db_url_read;
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    argc -= optind;
    argv += optind;
    optind = 0; /* each command parses its own arguments from argv[1] */
    if (strcmp(argv[0], "help") == 0)
        return help(argc, argv);
    if ((c = find(argv[0])) == NULL)
        die_usage("unknown command \"%s\"", argv[0]);
    return c->run(argc, argv);
}
