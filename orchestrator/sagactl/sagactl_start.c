/* sagactl_start.c - `sagactl start`: ask sagad to start a saga (a row of
 * saga.start_request, held to the input limit) and print its id once
 * sagad created it. */
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

int cmd_start(int argc, char **argv)
{
    const char *name = NULL, *input_arg = NULL, *key = NULL, *traceparent = NULL;
    saga_client *client = NULL;
    saga_error err = {0};
    saga_trace_context tc;
    json_t *input;
    char id[SAGA_ID_LEN + 1], status[32] = "pending";
    int existed = 0, rc, wait_ms = 10000;

    static const struct option opts[] = {{"input", required_argument, NULL, 'i'},
                                         {"key", required_argument, NULL, 'k'},
                                         {"traceparent", required_argument, NULL, 't'},
                                         {"no-wait", no_argument, NULL, 'n'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    for (int c; (c = sagactl_getopt("start", argc, argv, opts)) != -1;) {
        if (c == 'i')
            input_arg = optarg;
        else if (c == 'k')
            key = optarg;
        else if (c == 't')
            traceparent = optarg;
        else if (c == 'n')
            wait_ms = 0;
        else if (c == 'j')
            want_json = 1;
        else {
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
        }
    }
    name = sagactl_operand("start", argc, argv);
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
