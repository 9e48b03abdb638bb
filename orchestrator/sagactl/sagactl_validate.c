/* sagactl_validate.c - `sagactl validate`: check definition files as sagad
 * would load them, every problem with where it is, also as JSON. */
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

int cmd_validate(int argc, char **argv)
{
    int bad = 0, files = 0;
    long max_bytes = SAGA_DEFAULT_MAX_DEFINITION_BYTES;
    json_t *results;
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"max-definition-bytes", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    for (int c; (c = sagactl_getopt("validate", argc, argv, opts)) != -1;) {
        if (c == 'j')
            want_json = 1;
        else if (c == 'm')
            max_bytes = parse_number("validate", "--max-definition-bytes", optarg, 1,
                                     1073741824L);
        else {
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
        }
    }
    results = json_array();
    for (int k = optind; k < argc; k++) {
        saga_def_problems probs = {.max_bytes = max_bytes};
        saga_definition *def = NULL;
        files++;
        if (saga_definition_load_file(argv[k], &def, &probs) != SAGA_OK) {
            def = NULL;
            bad++;
            if (!want_json)
                print_problems(argv[k], &probs);
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
