/* Parsing and validation of saga definitions. Validation goes on after the
 * first problem so that a user fixes a file in one pass. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga_definition.h"
#include "saga_duration.h"
#include "saga_template.h"

static void problem(saga_def_problems *p, const char *where, const char *fmt, ...)
{
    va_list ap;
    if (p == NULL)
        return;
    if (p->count < (int)(sizeof p->items / sizeof p->items[0])) {
        saga_def_problem *it = &p->items[p->count];
        snprintf(it->where, sizeof it->where, "%s", where);
        va_start(ap, fmt);
        vsnprintf(it->message, sizeof it->message, fmt, ap);
        va_end(ap);
    }
    p->count++;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

/* Names of steps and services: letters, digits, '_', '-', '.'. */
static int is_ident(const char *s)
{
    if (*s == '\0' || strlen(s) > 100)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
            return 0;
    return 1;
}

static void check_keys(json_t *obj, const char *where, const char *const *allowed,
                       saga_def_problems *p)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        int ok = 0;
        char list[256] = "";
        for (int i = 0; allowed[i] != NULL; i++) {
            if (strcmp(k, allowed[i]) == 0)
                ok = 1;
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                     i ? ", " : "", allowed[i]);
        }
        if (!ok)
            problem(p, where, "unknown key \"%s\" (expected one of: %s)", k, list);
    }
}

static char *get_string(json_t *obj, const char *key, const char *where, int required,
                        int ident, saga_def_problems *p)
{
    json_t *v = json_object_get(obj, key);
    char path[300];
    snprintf(path, sizeof path, "%s%s%s", where, *where ? "." : "", key);
    if (v == NULL) {
        if (required)
            problem(p, path, "missing (expected a string)");
        return NULL;
    }
    if (!json_is_string(v)) {
        problem(p, path, "found %s, expected a string", type_name(v));
        return NULL;
    }
    if (ident && !is_ident(json_string_value(v))) {
        problem(
            p, path,
            "\"%s\" is not a valid name (expected 1-100 letters, digits, '_', '-', '.')",
            json_string_value(v));
        return NULL;
    }
    return strdup(json_string_value(v));
}

static void get_duration(json_t *obj, const char *key, const char *where, int64_t *out,
                         saga_def_problems *p)
{
    json_t *v = json_object_get(obj, key);
    char path[300];
    if (v == NULL)
        return;
    snprintf(path, sizeof path, "%s%s%s", where, *where ? "." : "", key);
    if (!json_is_string(v)) {
        problem(p, path,
                "found %s, expected a duration string such as \"250ms\", \"10s\", "
                "\"5m\" or \"1h\"",
                type_name(v));
        return;
    }
    if (saga_duration_parse(json_string_value(v), out) != 0 || *out <= 0)
        problem(p, path,
                "\"%s\" is not a positive duration (expected e.g. \"250ms\", \"10s\", "
                "\"5m\", \"1h\")",
                json_string_value(v));
}

static void get_retry(json_t *obj, const char *key, const char *where,
                      saga_retry_policy *r, saga_def_problems *p)
{
    static const char *const keys[] = {"max_attempts", "backoff", "max_backoff",
                                       "multiplier",   "jitter",  NULL};
    json_t *v = json_object_get(obj, key), *f;
    char path[300], fpath[340];
    if (v == NULL)
        return;
    snprintf(path, sizeof path, "%s%s%s", where, *where ? "." : "", key);
    if (!json_is_object(v)) {
        problem(p, path, "found %s, expected an object with %s", type_name(v),
                "max_attempts, backoff, max_backoff, multiplier, jitter");
        return;
    }
    check_keys(v, path, keys, p);
    if ((f = json_object_get(v, "max_attempts")) != NULL) {
        snprintf(fpath, sizeof fpath, "%s.max_attempts", path);
        if (!json_is_integer(f) || json_integer_value(f) < 1 ||
            json_integer_value(f) > 1000)
            problem(p, fpath, "expected an integer from 1 to 1000");
        else
            r->max_attempts = (int)json_integer_value(f);
    }
    get_duration(v, "backoff", path, &r->backoff_ms, p);
    get_duration(v, "max_backoff", path, &r->max_backoff_ms, p);
    if ((f = json_object_get(v, "multiplier")) != NULL) {
        snprintf(fpath, sizeof fpath, "%s.multiplier", path);
        if (!json_is_number(f) || json_number_value(f) < 1.0 ||
            json_number_value(f) > 100.0)
            problem(p, fpath, "expected a number from 1 to 100");
        else
            r->multiplier = json_number_value(f);
    }
    if ((f = json_object_get(v, "jitter")) != NULL) {
        snprintf(fpath, sizeof fpath, "%s.jitter", path);
        if (!json_is_number(f) || json_number_value(f) < 0.0 ||
            json_number_value(f) > 1.0)
            problem(p, fpath, "expected a number from 0 to 1");
        else
            r->jitter = json_number_value(f);
    }
    if (r->max_backoff_ms < r->backoff_ms)
        problem(p, path, "max_backoff is shorter than backoff");
}

/* Reference checking: which steps may a step's input name? */
typedef struct ref_check {
    const saga_definition *def;
    int step;
    saga_def_problems *p;
} ref_check;

static int check_ref(const char *path, const char *where, void *arg)
{
    ref_check *rc = arg;
    if (path == NULL) {
        problem(rc->p, where, "unterminated \"${\" (expected \"${...}\")");
        return 0;
    }
    if (strncmp(path, "input", 5) == 0 &&
        (path[5] == '\0' || path[5] == '.' || path[5] == '['))
        return 0;
    if (strcmp(path, "saga.id") == 0 || strcmp(path, "saga.name") == 0 ||
        strcmp(path, "saga.version") == 0)
        return 0;
    if (strncmp(path, "steps.", 6) == 0) {
        char name[128];
        const char *rest = path + 6;
        size_t n = strcspn(rest, ".[");
        int idx;
        snprintf(name, sizeof name, "%.*s", (int)n, rest);
        idx = saga_definition_step_index(rc->def, name);
        if (idx < 0)
            problem(rc->p, where, "\"${%s}\" names unknown step \"%s\"", path, name);
        else if (idx >= rc->def->steps[rc->step].stage_first && idx < rc->step)
            problem(
                rc->p, where,
                "\"${%s}\" names step \"%s\", which runs at the same time as this one "
                "(same group)",
                path, name);
        else if (idx >= rc->step)
            problem(rc->p, where,
                    "\"${%s}\" names step \"%s\", which does not run before this one",
                    path, name);
        else if (strncmp(rest + n, ".output", 7) != 0 ||
                 (rest[n + 7] != '\0' && rest[n + 7] != '.' && rest[n + 7] != '['))
            problem(rc->p, where, "\"${%s}\": expected steps.%s.output[...]", path, name);
        return 0;
    }
    problem(
        rc->p, where,
        "\"${%s}\" must start with input, steps.NAME.output or saga (id, name, version)",
        path);
    return 0;
}

static void parse_step(json_t *s, int i, saga_definition *def,
                       const saga_retry_policy *dretry, const saga_retry_policy *dcomp,
                       int64_t dtimeout, saga_def_problems *p)
{
    static const char *const keys[] = {
        "name",  "service",     "action", "compensation",
        "input", "timeout",     "retry",  "compensation_retry",
        "pivot", "description", "group",  NULL};
    saga_step_def *st = &def->steps[i];
    char where[64];
    json_t *v;

    snprintf(where, sizeof where, "steps[%d]", i);
    st->retry = *dretry;
    st->compensation_retry = *dcomp;
    st->timeout_ms = dtimeout;
    if (!json_is_object(s)) {
        problem(p, where, "found %s, expected a step object", type_name(s));
        return;
    }
    check_keys(s, where, keys, p);
    st->name = get_string(s, "name", where, 1, 1, p);
    st->service = get_string(s, "service", where, 1, 1, p);
    st->action = get_string(s, "action", where, 1, 1, p);
    v = json_object_get(s, "compensation");
    if (v != NULL && !json_is_null(v))
        st->compensation = get_string(s, "compensation", where, 0, 1, p);
    v = json_object_get(s, "input");
    if (v != NULL && !json_is_object(v)) {
        problem(p, where, "input: found %s, expected an object", type_name(v));
    } else {
        st->input = v != NULL ? json_incref(v) : json_object();
    }
    get_duration(s, "timeout", where, &st->timeout_ms, p);
    get_retry(s, "retry", where, &st->retry, p);
    get_retry(s, "compensation_retry", where, &st->compensation_retry, p);
    v = json_object_get(s, "pivot");
    if (v != NULL) {
        if (!json_is_boolean(v))
            problem(p, where, "pivot: found %s, expected true or false", type_name(v));
        else
            st->pivot = json_is_true(v);
    }
    v = json_object_get(s, "description");
    if (v != NULL && !json_is_string(v))
        problem(p, where, "description: found %s, expected a string", type_name(v));
    st->group = get_string(s, "group", where, 0, 1, p);
}

int saga_definition_from_json(json_t *body, saga_definition **out,
                              saga_def_problems *problems)
{
    static const char *const keys[] = {"name",  "description", "deadline", "defaults",
                                       "steps", "$schema",     NULL};
    static const char *const dkeys[] = {"timeout", "retry", "compensation_retry", NULL};
    saga_def_problems local = {0};
    saga_def_problems *p = problems ? problems : &local;
    saga_definition *def;
    saga_retry_policy dretry = {SAGA_DEFAULT_MAX_ATTEMPTS, SAGA_DEFAULT_BACKOFF_MS,
                                SAGA_DEFAULT_MAX_BACKOFF_MS, 2.0, 0.2};
    saga_retry_policy dcomp = {SAGA_DEFAULT_COMP_MAX_ATTEMPTS, SAGA_DEFAULT_BACKOFF_MS,
                               SAGA_DEFAULT_MAX_BACKOFF_MS, 2.0, 0.2};
    int64_t dtimeout = SAGA_DEFAULT_TIMEOUT_MS;
    json_t *steps, *v;
    int start = p->count, seen_pivot = 0;

    *out = NULL;
    if (!json_is_object(body)) {
        problem(p, "$", "found %s, expected a definition object",
                body ? type_name(body) : "nothing");
        return SAGA_EDEF;
    }
    def = calloc(1, sizeof *def);
    if (def == NULL)
        return SAGA_ENOMEM;
    def->body = json_incref(body);
    check_keys(body, "$", keys, p);
    def->name = get_string(body, "name", "", 1, 1, p);
    v = json_object_get(body, "description");
    if (v != NULL && !json_is_string(v))
        problem(p, "description", "found %s, expected a string", type_name(v));
    else if (v != NULL)
        def->description = strdup(json_string_value(v));
    get_duration(body, "deadline", "", &def->deadline_ms, p);
    v = json_object_get(body, "defaults");
    if (v != NULL) {
        if (!json_is_object(v)) {
            problem(p, "defaults", "found %s, expected an object", type_name(v));
        } else {
            check_keys(v, "defaults", dkeys, p);
            get_duration(v, "timeout", "defaults", &dtimeout, p);
            get_retry(v, "retry", "defaults", &dretry, p);
            get_retry(v, "compensation_retry", "defaults", &dcomp, p);
        }
    }
    steps = json_object_get(body, "steps");
    if (steps == NULL) {
        problem(p, "steps", "missing (expected a non-empty array of steps)");
    } else if (!json_is_array(steps) || json_array_size(steps) == 0) {
        problem(p, "steps", "found %s, expected a non-empty array of steps",
                json_is_array(steps) ? "an empty array" : type_name(steps));
    } else if (json_array_size(steps) > 1000) {
        problem(p, "steps", "%zu steps; at most 1000 are allowed",
                json_array_size(steps));
    } else {
        def->nsteps = (int)json_array_size(steps);
        def->steps = calloc((size_t)def->nsteps, sizeof *def->steps);
        if (def->steps == NULL) {
            saga_definition_free(def);
            return SAGA_ENOMEM;
        }
        for (int i = 0; i < def->nsteps; i++)
            parse_step(json_array_get(steps, (size_t)i), i, def, &dretry, &dcomp,
                       dtimeout, p);
        for (int i = 0; i < def->nsteps; i++) {
            saga_step_def *st = &def->steps[i];
            char where[64];
            snprintf(where, sizeof where, "steps[%d]", i);
            for (int j = 0; j < i && st->name; j++)
                if (def->steps[j].name && strcmp(def->steps[j].name, st->name) == 0)
                    problem(p, where, "duplicate step name \"%s\" (also steps[%d])",
                            st->name, j);
            if (st->pivot)
                seen_pivot = 1;
            st->forward_only = seen_pivot;
            st->irreversible =
                json_object_get(json_array_get(steps, (size_t)i), "compensation") == NULL;
            /* Adjacent steps of one group run together: a stage. */
            st->stage_first = st->stage_last = i;
            if (st->group != NULL && i > 0 && def->steps[i - 1].group != NULL &&
                strcmp(def->steps[i - 1].group, st->group) == 0) {
                st->stage_first = def->steps[i - 1].stage_first;
                for (int j = st->stage_first; j <= i; j++)
                    def->steps[j].stage_last = i;
            } else if (st->group != NULL) {
                for (int j = 0; j < i; j++)
                    if (def->steps[j].group != NULL &&
                        strcmp(def->steps[j].group, st->group) == 0)
                        problem(
                            p, where,
                            "group \"%s\" is split: its steps must be next to each other "
                            "(also steps[%d])",
                            st->group, j);
            }
            if (st->group != NULL && (st->pivot || st->forward_only))
                problem(p, where,
                        "step \"%s\" is at or after the pivot and in group \"%s\": steps "
                        "that can only go forward run one at a time",
                        st->name ? st->name : "?", st->group);
        }
        for (int i = 0; i < def->nsteps; i++) {
            saga_step_def *st = &def->steps[i];
            char where[64];
            json_t *s = json_array_get(steps, (size_t)i);
            ref_check rc = {def, i, p};
            snprintf(where, sizeof where, "steps[%d].input", i);
            if (st->input != NULL)
                saga_template_refs(st->input, where, check_ref, &rc);
            /* A step that later steps can still undo needs a compensation,
             * unless the author says there is nothing to undo (null). */
            snprintf(where, sizeof where, "steps[%d]", i);
            if (json_is_object(s) && json_object_get(s, "compensation") == NULL &&
                !st->forward_only && st->stage_last < def->nsteps - 1)
                problem(p, where,
                        "step \"%s\" has no compensation, but later steps can fail and "
                        "undo it "
                        "(add \"compensation\", or \"compensation\": null if there is "
                        "nothing "
                        "to undo)",
                        st->name ? st->name : "?");
        }
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
        problem(problems, where, "invalid JSON: %s", jerr.text);
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
    int rc;

    *out = NULL;
    if (f == NULL) {
        problem(problems, path, "cannot open: %s", strerror(errno));
        return SAGA_EIO;
    }
    for (;;) {
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
