/* saga_definition.c - a saga definition from JSON text, a file or a parsed
 * document: the top level (name, version, defaults, steps, limits), then
 * the steps (saga_definition_steps.c); and freeing it, and finding a step.
 * Validation goes on after the first problem so that a user fixes a file
 * in one pass. */
#include "saga_condition.h"
#include "saga_definition_internal.h"

int saga_definition_from_json(json_t *body, saga_definition **out,
                              saga_def_problems *problems)
{
    static const char *const keys[] = {"name",  "description", "deadline", "defaults",
                                       "steps", "$schema",     NULL};
    static const char *const dkeys[] = {"timeout", "retry", "compensation_retry", NULL};
    saga_def_problems local = {0};
    saga_def_problems *p = problems ? problems : &local;
    saga_definition *def;
    step_defaults dflt = {
        .retry = {SAGA_DEFAULT_MAX_ATTEMPTS, SAGA_DEFAULT_BACKOFF_MS,
                  SAGA_DEFAULT_MAX_BACKOFF_MS, 2.0, 0.2},
        .comp = {SAGA_DEFAULT_COMP_MAX_ATTEMPTS, SAGA_DEFAULT_BACKOFF_MS,
                 SAGA_DEFAULT_MAX_BACKOFF_MS, 2.0, 0.2},
        .retry_from = {BUILTIN_DEFAULT, BUILTIN_DEFAULT},
        .comp_from = {BUILTIN_DEFAULT, BUILTIN_DEFAULT},
        .timeout_ms = SAGA_DEFAULT_TIMEOUT_MS,
    };
    json_t *steps, *v;
    int start = p->count;

    *out = NULL;
    if (!json_is_object(body)) {
        saga__def_problem(p, "$", "found %s, expected a definition object",
                          body ? saga__def_type_name(body) : "nothing");
        return SAGA_EDEF;
    }
    def = calloc(1, sizeof *def);
    if (def == NULL)
        return SAGA_ENOMEM;
    def->body = json_incref(body);
    if (!p->stored) {
        /* Measured as stored (PostgreSQL's jsonb text, which the limit's
         * trigger counts): a file's own indentation does not count. */
        int64_t size = (int64_t)json_dumpb(body, NULL, 0, 0),
                max = saga__def_max_bytes_of(p);
        string_walk w = {.path = "", .p = p};
        char n1[32], n2[32];
        if (size > max)
            saga__def_problem(
                p, "$",
                "the definition is %s bytes (its JSON text as stored); the limit is "
                "%s (saga.limits max_definition_bytes)",
                saga__bytes_text(size, n1, sizeof n1),
                saga__bytes_text(max, n2, sizeof n2));
        saga__def_long_strings(&w, 0, body);
    }
    saga__def_check_keys(body, "$", keys, "version", p);
    /* Versions are not written by hand: the store numbers content. */
    if (json_object_get(body, "version") != NULL)
        saga__def_problem(
            p, "version",
            "a definition does not carry its version: sagactl defs deploy (and "
            "sagad, for its folder) assign one, the next number for changed "
            "content; remove this key");
    v = json_object_get(body, "$schema");
    if (v != NULL && !json_is_string(v))
        saga__def_rule(p, "$schema", "found %s, expected a string (a JSON schema's URL)",
                       saga__def_type_name(v));
    def->name = saga__def_get_string(body, "name", "", 1, 1, p);
    v = json_object_get(body, "description");
    if (v != NULL && !json_is_string(v))
        saga__def_problem(p, "description", "found %s, expected a string",
                          saga__def_type_name(v));
    else if (v != NULL)
        def->description = strdup(json_string_value(v));
    saga__def_get_duration(body, "deadline", "", &def->deadline_ms, p);
    v = json_object_get(body, "defaults");
    if (v != NULL) {
        if (!json_is_object(v)) {
            saga__def_problem(p, "defaults", "found %s, expected an object",
                              saga__def_type_name(v));
        } else {
            saga__def_check_keys(v, "defaults", dkeys, NULL, p);
            saga__def_get_duration(v, "timeout", "defaults", &dflt.timeout_ms, p);
            saga__def_get_retry(v, "retry", "defaults", &dflt.retry, &dflt.retry_from, p);
            saga__def_get_retry(v, "compensation_retry", "defaults", &dflt.comp,
                                &dflt.comp_from, p);
        }
    }
    steps = json_object_get(body, "steps");
    if (steps == NULL) {
        saga__def_problem(p, "steps", "missing (expected a non-empty array of steps)");
    } else if (!json_is_array(steps) || json_array_size(steps) == 0) {
        saga__def_problem(p, "steps", "found %s, expected a non-empty array of steps",
                          json_is_array(steps) ? "an empty array"
                                               : saga__def_type_name(steps));
    } else if (json_array_size(steps) > 1000) {
        saga__def_problem(p, "steps", "found %zu steps; at most 1000 are allowed",
                          json_array_size(steps));
    } else {
        def->nsteps = (int)json_array_size(steps);
        def->steps = calloc((size_t)def->nsteps, sizeof *def->steps);
        if (def->steps == NULL) {
            saga_definition_free(def);
            return SAGA_ENOMEM;
        }
        for (int i = 0; i < def->nsteps; i++)
            saga__def_parse_step(json_array_get(steps, (size_t)i), i, def, &dflt, p);
        saga__def_check_steps(def, steps, p);
    }
    if (p->count > start) {
        saga_definition_free(def);
        return SAGA_EDEF;
    }
    *out = def;
    return SAGA_OK;
}

int saga_definition_parse(const char *text, size_t len, saga_definition **out,
                          saga_def_problems *problems)
{
    json_error_t jerr;
    json_t *body;
    int rc;

    *out = NULL;
    body = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (body == NULL) {
        char where[64];
        snprintf(where, sizeof where, "line %d, column %d", jerr.line, jerr.column);
        saga__def_problem(problems, where, "invalid JSON: %s", jerr.text);
        return SAGA_EDEF;
    }
    rc = saga_definition_from_json(body, out, problems);
    json_decref(body);
    return rc;
}

int saga_definition_load_file(const char *path, saga_definition **out,
                              saga_def_problems *problems)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    /* Indentation makes a file a few times larger than what is stored,
     * never sixteen: past that it is not read into memory at all. */
    int64_t most = 16 * saga__def_max_bytes_of(problems);
    int rc;

    *out = NULL;
    if (f == NULL) {
        saga__def_problem(problems, path, "cannot open: %s", strerror(errno));
        return SAGA_EIO;
    }
    for (;;) {
        if ((int64_t)len > most) {
            char n1[32], n2[32];
            free(buf);
            fclose(f);
            saga__def_problem(
                problems, "$",
                "the file is over %s bytes, 16 times the limit of %s "
                "(saga.limits max_definition_bytes); not read",
                saga__bytes_text(most, n1, sizeof n1),
                saga__bytes_text(saga__def_max_bytes_of(problems), n2, sizeof n2));
            return SAGA_EDEF;
        }
        if (len + 4096 > cap) {
            char *nb;
            cap = cap ? cap * 2 : 8192;
            nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return SAGA_ENOMEM;
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    fclose(f);
    rc = saga_definition_parse(buf, len, out, problems);
    free(buf);
    return rc;
}

void saga_definition_free(saga_definition *def)
{
    if (def == NULL)
        return;
    for (int i = 0; i < def->nsteps; i++) {
        free(def->steps[i].name);
        free(def->steps[i].service);
        free(def->steps[i].action);
        free(def->steps[i].compensation);
        free(def->steps[i].group);
        json_decref(def->steps[i].input);
        saga_condition_free(def->steps[i].when);
        free(def->steps[i].wait_signal);
        free(def->steps[i].for_each);
        free(def->steps[i].child);
        json_decref(def->steps[i].wait_default);
    }
    free(def->steps);
    free(def->name);
    free(def->description);
    json_decref(def->body);
    free(def);
}

int saga_definition_step_index(const saga_definition *def, const char *name)
{
    for (int i = 0; i < def->nsteps; i++)
        if (def->steps[i].name != NULL && strcmp(def->steps[i].name, name) == 0)
            return i;
    return -1;
}
