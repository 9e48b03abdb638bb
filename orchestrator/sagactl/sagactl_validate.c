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

/* A child step's definition among the files validated together (no
 * database here: deploy checks the stored ones too). */
typedef struct files_lookup {
    saga_definition **defs;
    int n;
} files_lookup;

static const saga_definition *among_files(const char *name, void *arg)
{
    const files_lookup *v = arg;
    for (int i = 0; i < v->n; i++)
        if (v->defs[i] != NULL && strcmp(v->defs[i]->name, name) == 0)
            return v->defs[i];
    return NULL;
}

int cmd_validate(int argc, char **argv)
{
    int bad = 0, files = 0, nfiles;
    files_lookup v = {NULL, 0};
    saga_def_problems *probs;
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
    /* All loaded first: a child step's definition is one of the files. */
    nfiles = argc > optind ? argc - optind : 0;
    v.defs = calloc((size_t)nfiles + 1, sizeof *v.defs);
    probs = calloc((size_t)nfiles + 1, sizeof *probs);
    if (v.defs == NULL || probs == NULL)
        die_usage("validate: %s", "out of memory");
    for (int k = 0; k < nfiles; k++) {
        probs[k].max_bytes = max_bytes;
        if (saga_definition_load_file(argv[optind + k], &v.defs[k], &probs[k]) != SAGA_OK)
            v.defs[k] = NULL;
    }
    v.n = nfiles;
    for (int k = 0; k < nfiles; k++) {
        const char *file = argv[optind + k];
        saga_definition *def = v.defs[k];
        files++;
        if (def != NULL &&
            saga_definition_check_children(def, among_files, &v, &probs[k]) != SAGA_OK)
            def = NULL;
        if (def == NULL) {
            bad++;
            if (!want_json)
                print_problems(file, &probs[k]);
        } else if (!want_json) {
            printf("%s: ok (saga \"%s\", %d steps)\n", file, def->name, def->nsteps);
        }
        if (want_json)
            json_array_append_new(results, validate_json(file, def, &probs[k]));
    }
    for (int k = 0; k < nfiles; k++)
        saga_definition_free(v.defs[k]);
    free(v.defs);
    free(probs);
    if (files == 0) {
        json_decref(results);
        die_usage("validate: no %s given", "FILE");
    }
    if (want_json)
        print_json(results);
    json_decref(results);
    return bad ? EXIT_REFUSED : EXIT_OK;
}
