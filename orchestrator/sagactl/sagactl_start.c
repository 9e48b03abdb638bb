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

/* The value of option opt of command cmd as JSON: the text itself, @FILE,
 * or - (stdin), so that a value too long for a command line can be given.
 * Exit 2 naming what is wrong. */
static json_t *load_json_arg(const char *cmd, const char *opt, const char *arg)
{
    json_error_t jerr;
    json_t *input;
    char what[300] = "";

    if (strcmp(arg, "-") == 0) {
        input = json_loadf(stdin, 0, &jerr);
        snprintf(what, sizeof what, "%s - (stdin)", opt);
    } else if (arg[0] == '@') { /* no JSON text starts with '@' */
        FILE *f = fopen(arg + 1, "rb");
        if (f == NULL)
            die_usage("%s: %s %s: cannot open: %s", cmd, opt, arg, strerror(errno));
        input = json_loadf(f, 0, &jerr);
        fclose(f);
        snprintf(what, sizeof what, "%s %.280s", opt, arg);
    } else {
        input = json_loads(arg, 0, &jerr);
    }
    if (input == NULL && what[0] == '\0')
        die_usage("%s: %s must be a JSON object: %s", cmd, opt, jerr.text);
    if (input == NULL)
        die_usage("%s: %s: line %d, column %d: %s", cmd, what, jerr.line, jerr.column,
                  jerr.text);
    if (!json_is_object(input))
        die_usage("%s: %s must be a JSON object: found another JSON value", cmd,
                  what[0] ? what : opt);
    return input;
}

static json_t *load_input(const char *arg)
{
    return load_json_arg("start", "--input", arg);
}

int cmd_start(int argc, char **argv)
{
    const char *name = NULL, *input_arg = NULL, *key = NULL, *traceparent = NULL;
    const char *business_key = NULL, *at = NULL;
    saga_start_options so = SAGA_START_OPTIONS_INIT;
    int64_t in_ms = -1;
    saga_client *client = NULL;
    saga_error err = {0};
    saga_trace_context tc;
    json_t *input;
    char id[SAGA_ID_LEN + 1], status[32] = "pending";
    int existed = 0, rc, wait_ms = 10000;

    static const struct option opts[] = {{"input", required_argument, NULL, 'i'},
                                         {"key", required_argument, NULL, 'k'},
                                         {"traceparent", required_argument, NULL, 't'},
                                         {"business-key", required_argument, NULL, 'b'},
                                         {"at", required_argument, NULL, 'A'},
                                         {"in", required_argument, NULL, 'I'},
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
        else if (c == 'b')
            business_key = optarg;
        else if (c == 'A')
            at = optarg;
        else if (c == 'I')
            in_ms = parse_duration_opt("start", "--in", optarg, "30m or 2h");
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
                   "With --traceparent (W3C), the saga continues that trace.\n"
                   "--business-key KEY: your name for it (1 to 200 bytes), for `list "
                   "--key`.\n"
                   "--in 30m / --at 2026-12-24T08:00:00Z: start it later; until then "
                   "it is\nscheduled (`show`) and `sagactl cancel ID --reason T` "
                   "cancels it.\n");
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
    if (business_key != NULL && (*business_key == '\0' || strlen(business_key) > 200))
        die_usage("start: --business-key is 1 to 200 bytes");
    if (at != NULL && in_ms >= 0)
        die_usage("start: --at or --in, not both");
    if (at != NULL) {
        struct tm tm = {0};
        char z[2] = "";
        int n = sscanf(at, "%4d-%2d-%2dT%2d:%2d:%2d%1[Z]", &tm.tm_year, &tm.tm_mon,
                       &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, z);
        if ((n != 6 && n != 7) || strlen(at) != (size_t)(n == 7 ? 20 : 19) ||
            tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
            tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60 || tm.tm_year < 1970)
            die_usage("start: --at \"%s\": expected a UTC time like "
                      "2026-12-24T08:00:00Z",
                      at);
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        so.start_at_ms = (int64_t)timegm(&tm) * 1000;
    } else if (in_ms >= 0) {
        so.start_at_ms = saga__wall_ms() + in_ms;
    }
    if (so.start_at_ms > 0)
        wait_ms = 0; /* it starts later: nothing to wait for now */
    so.idempotency_key = key;
    so.traceparent = traceparent;
    so.business_key = business_key;
    input = input_arg != NULL ? load_input(input_arg) : json_object();
    if (db_url == NULL) {
        json_decref(input);
        connect_db(0); /* says what is missing and exits */
    }
    /* Through a start request, as libsaga's client does: sagad creates the
     * saga and sends its first command through its circuit breakers. */
    if ((rc = saga_client_new(db_url, &client, &err)) == SAGA_OK)
        rc = saga_client_start_with(client, name, input, &so, id, &existed, &err);
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

/* ---- cancel ---- */

int cmd_cancel(int argc, char **argv)
{
    const char *id, *reason = NULL;
    saga_client *client = NULL;
    saga_error err = {0};
    int rc;
    static const struct option opts[] = {{"reason", required_argument, NULL, 'r'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    for (int c; (c = sagactl_getopt("cancel", argc, argv, opts)) != -1;) {
        if (c == 'r') {
            reason = optarg;
        } else {
            printf("usage: sagactl cancel ID --reason TEXT\n"
                   "Cancels a saga that has not started yet (scheduled with start --at/"
                   "--in,\nor pending): sagad will not start it; the role and the "
                   "reason are recorded.\nA saga that has started is compensated "
                   "instead (sagactl compensate).\n");
            return EXIT_OK;
        }
    }
    id = sagactl_operand("cancel", argc, argv);
    if (id == NULL)
        die_usage("cancel: missing the saga %s", "ID");
    check_uuid("cancel", id);
    if (reason == NULL || *reason == '\0')
        die_usage("cancel: --reason is required: say why, it is recorded");
    if (db_url == NULL)
        connect_db(0); /* says what is missing and exits */
    if ((rc = saga_client_new(db_url, &client, &err)) == SAGA_OK)
        rc = saga_client_cancel(client, id, reason, &err);
    saga_client_free(client);
    if (rc == SAGA_ESTATE || rc == SAGA_ENOTFOUND) {
        fprintf(stderr, "sagactl cancel: refused: %s\n", err.message);
        return EXIT_REFUSED;
    }
    if (rc != SAGA_OK) {
        fprintf(stderr, "sagactl cancel: %s\n", err.message);
        return rc == SAGA_EINVAL ? EXIT_USAGE : EXIT_DB;
    }
    printf("cancel: saga %s is cancelled: it will not start\n", id);
    return EXIT_OK;
}

/* ---- signal ---- */

int cmd_signal(int argc, char **argv)
{
    const char *id, *name, *payload_text = NULL, *signal_id = NULL, *reason = NULL;
    saga_client *client = NULL;
    saga_error err = {0};
    json_t *payload = NULL;
    int rc, failed = 0, duplicate = 0;
    static const struct option opts[] = {{"payload", required_argument, NULL, 'p'},
                                         {"id", required_argument, NULL, 'i'},
                                         {"fail", no_argument, NULL, 'f'},
                                         {"reason", required_argument, NULL, 'r'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    for (int c; (c = sagactl_getopt("signal", argc, argv, opts)) != -1;) {
        if (c == 'p')
            payload_text = optarg;
        else if (c == 'i')
            signal_id = optarg;
        else if (c == 'f')
            failed = 1;
        else if (c == 'r')
            reason = optarg;
        else {
            printf("usage: sagactl signal ID NAME [--payload JSON|@FILE|-] [--id "
                   "SIGNAL_ID]\n"
                   "                               [--fail --reason TEXT]\n"
                   "Sends signal NAME to saga ID, for its wait step of that signal: the "
                   "payload\n(a JSON object) becomes the step's output; --fail is a "
                   "verdict that fails\nthe step (the saga is compensated), --reason "
                   "says why. A signal that comes\nbefore the saga waits for it is kept "
                   "until it does. With --id, sending again\nis harmless: the same id is "
                   "absorbed. A saga that has ended takes no signal\n(exit 1).\n");
            return EXIT_OK;
        }
    }
    if (optind + 2 != argc)
        die_usage("signal: expected ID NAME%s",
                  optind + 2 < argc ? " (one signal at a time)" : "");
    id = argv[optind];
    name = argv[optind + 1];
    check_uuid("signal", id);
    if (failed && (reason == NULL || *reason == '\0'))
        die_usage("signal: --fail needs --reason TEXT (it becomes the step's error)");
    if (!failed && reason != NULL)
        die_usage("signal: --reason goes with --fail");
    if (payload_text != NULL)
        payload = load_json_arg("signal", "--payload", payload_text);
    if (db_url == NULL) {
        json_decref(payload);
        connect_db(0); /* says what is missing and exits */
    }
    if ((rc = saga_client_new(db_url, &client, &err)) == SAGA_OK)
        rc = saga_client_signal(client, id, name, signal_id, payload, failed, reason,
                                &duplicate, &err);
    saga_client_free(client);
    json_decref(payload);
    if (rc == SAGA_ESTATE || rc == SAGA_ENOTFOUND) {
        fprintf(stderr, "sagactl signal: refused: %s\n", err.message);
        return EXIT_REFUSED;
    }
    if (rc == SAGA_EINVAL)
        die_usage("signal: %s", err.message);
    if (rc != SAGA_OK) {
        fprintf(stderr, "sagactl signal: %s\n", err.message);
        return EXIT_DB;
    }
    printf("signal: %s for saga %s %s\n", name, id,
           duplicate ? "was sent before (this one is absorbed)"
                     : "kept: delivered when the saga waits for it (sagactl show)");
    return EXIT_OK;
}
