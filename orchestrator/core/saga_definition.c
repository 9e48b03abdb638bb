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

static void vproblem(saga_def_problems *p, const char *where, const char *fmt, va_list ap)
{
    if (p->count < (int)(sizeof p->items / sizeof p->items[0])) {
        saga_def_problem *it = &p->items[p->count];
        snprintf(it->where, sizeof it->where, "%s", where);
        vsnprintf(it->message, sizeof it->message, fmt, ap);
    }
    p->count++;
}

static void problem(saga_def_problems *p, const char *where, const char *fmt, ...)
{
    va_list ap;
    if (p == NULL)
        return;
    va_start(ap, fmt);
    vproblem(p, where, fmt, ap);
    va_end(ap);
}

/* A rule that guards authors against mistakes but that the engine does
 * not need to run a definition: not applied to stored definitions. */
static void rule(saga_def_problems *p, const char *where, const char *fmt, ...)
{
    va_list ap;
    if (p == NULL || p->stored)
        return;
    va_start(ap, fmt);
    vproblem(p, where, fmt, ap);
    va_end(ap);
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

/* What was found, for a message: the value itself when it is short and
 * plain (1.5, 0, true, the string "3"), else its type. */
static const char *describe(const json_t *v, char *buf, size_t size)
{
    switch (json_typeof(v)) {
    case JSON_INTEGER:
        snprintf(buf, size, "%lld", (long long)json_integer_value(v));
        return buf;
    case JSON_REAL:
        snprintf(buf, size, "%g", json_real_value(v));
        return buf;
    case JSON_STRING:
        if (json_string_length(v) <= 40) {
            snprintf(buf, size, "the string \"%s\"", json_string_value(v));
            return buf;
        }
        return "a string";
    case JSON_TRUE:
        return "true";
    case JSON_FALSE:
        return "false";
    default:
        return type_name(v);
    }
}

/* 2097152 -> "2,097,152": sizes in messages are read by people. */
static const char *bytes_text(int64_t n, char *buf, size_t size)
{
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%lld", (long long)n), o = 0;
    for (int i = 0; i < len && o + 2 < (int)size; i++) {
        if (i > 0 && digits[i - 1] != '-' && (len - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

static int64_t max_bytes_of(const saga_def_problems *p)
{
    return p != NULL && p->max_bytes > 0 ? p->max_bytes
                                         : SAGA_DEFAULT_MAX_DEFINITION_BYTES;
}

/* Every string value and key over SAGA_DEF_MAX_STRING_BYTES, each with
 * where it is. One path buffer for the whole walk (nesting may be deep). */
typedef struct string_walk {
    char path[256];
    saga_def_problems *p;
} string_walk;

static void long_strings(string_walk *w, size_t len, json_t *v)
{
    char n1[32], n2[32];
    const char *k;
    json_t *child;
    size_t i;

    if (json_is_string(v) && json_string_length(v) > SAGA_DEF_MAX_STRING_BYTES) {
        rule(w->p, len ? w->path : "$",
             "a string of %s bytes; at most %s are allowed (a definition holds names, "
             "templates and text: data belongs in the saga's input)",
             bytes_text((int64_t)json_string_length(v), n1, sizeof n1),
             bytes_text(SAGA_DEF_MAX_STRING_BYTES, n2, sizeof n2));
    } else if (json_is_object(v)) {
        json_object_foreach(v, k, child)
        {
            size_t klen = strlen(k);
            int n;
            if (klen > SAGA_DEF_MAX_STRING_BYTES)
                rule(w->p, len ? w->path : "$",
                     "a key of %s bytes (\"%.20s...\"); at most %s are allowed",
                     bytes_text((int64_t)klen, n1, sizeof n1), k,
                     bytes_text(SAGA_DEF_MAX_STRING_BYTES, n2, sizeof n2));
            n = snprintf(w->path + len, sizeof w->path - len, "%s%s", len ? "." : "", k);
            long_strings(w,
                         n < 0 || len + (size_t)n >= sizeof w->path ? sizeof w->path - 1
                                                                    : len + (size_t)n,
                         child);
            w->path[len] = '\0';
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, child)
        {
            int n = snprintf(w->path + len, sizeof w->path - len, "[%zu]", i);
            long_strings(w,
                         n < 0 || len + (size_t)n >= sizeof w->path ? sizeof w->path - 1
                                                                    : len + (size_t)n,
                         child);
            w->path[len] = '\0';
        }
    }
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

/* Unknown keys of obj; skip names one that the caller reports itself. */
static void check_keys(json_t *obj, const char *where, const char *const *allowed,
                       const char *skip, saga_def_problems *p)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        int ok = skip != NULL && strcmp(k, skip) == 0;
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

/* A duration at obj.key into *out (left alone unless valid). Returns 1 when
 * the key is absent, 0 when it was valid, -1 after reporting a problem. */
static int get_duration(json_t *obj, const char *key, const char *where, int64_t *out,
                        saga_def_problems *p)
{
    json_t *v = json_object_get(obj, key);
    char path[300];
    int64_t ms;
    if (v == NULL)
        return 1;
    snprintf(path, sizeof path, "%s%s%s", where, *where ? "." : "", key);
    if (!json_is_string(v)) {
        problem(p, path,
                "found %s, expected a duration string such as \"250ms\", \"10s\", "
                "\"5m\" or \"1h\"",
                type_name(v));
        return -1;
    }
    if (saga_duration_parse(json_string_value(v), &ms) != 0 || ms <= 0) {
        problem(p, path,
                "\"%s\" is not a positive duration (expected e.g. \"250ms\", \"10s\", "
                "\"5m\", \"1h\")",
                json_string_value(v));
        return -1;
    }
    *out = ms;
    return 0;
}

/* Where a policy's backoff and max_backoff came from, so that a message
 * comparing them can say which setting to change. */
typedef struct retry_from {
    char backoff[320];
    char max_backoff[320];
} retry_from;

#define BUILTIN_DEFAULT "the built-in default"

/* A number at obj.key within [lo, hi] (an integer if integer), else a
 * problem saying what was found. Returns 0 when absent or bad. */
static int get_number(json_t *obj, const char *key, const char *where, double lo,
                      double hi, int integer, double *out, saga_def_problems *p)
{
    json_t *f = json_object_get(obj, key);
    char path[340], found[64];
    if (f == NULL)
        return 0;
    if ((integer ? json_is_integer(f) : json_is_number(f)) &&
        json_number_value(f) >= lo && json_number_value(f) <= hi) {
        *out = json_number_value(f);
        return 1;
    }
    snprintf(path, sizeof path, "%s.%s", where, key);
    problem(p, path, "found %s, expected %s from %g to %g",
            describe(f, found, sizeof found), integer ? "an integer" : "a number", lo,
            hi);
    return 0;
}

/* The retry policy at obj.key over *r (which holds the inherited values,
 * whose origins are in *from). */
static void get_retry(json_t *obj, const char *key, const char *where,
                      saga_retry_policy *r, retry_from *from, saga_def_problems *p)
{
    static const char *const keys[] = {"max_attempts", "backoff", "max_backoff",
                                       "multiplier",   "jitter",  NULL};
    json_t *v = json_object_get(obj, key);
    char path[300];
    double num;
    int b, mb;
    if (v == NULL)
        return;
    snprintf(path, sizeof path, "%s%s%s", where, *where ? "." : "", key);
    if (!json_is_object(v)) {
        problem(p, path, "found %s, expected an object with %s", type_name(v),
                "max_attempts, backoff, max_backoff, multiplier, jitter");
        return;
    }
    check_keys(v, path, keys, NULL, p);
    if (get_number(v, "max_attempts", path, 1, 1000, 1, &num, p))
        r->max_attempts = (int)num;
    if ((b = get_duration(v, "backoff", path, &r->backoff_ms, p)) == 0)
        snprintf(from->backoff, sizeof from->backoff, "%s.backoff", path);
    if ((mb = get_duration(v, "max_backoff", path, &r->max_backoff_ms, p)) == 0)
        snprintf(from->max_backoff, sizeof from->max_backoff, "%s.max_backoff", path);
    if (get_number(v, "multiplier", path, 1, 100, 0, &num, p))
        r->multiplier = num;
    if (get_number(v, "jitter", path, 0, 1, 0, &num, p))
        r->jitter = num;
    /* Compared only where one of the two is set (an inherited pair was
     * checked where it was set) and neither was reported already. */
    if ((b == 0 || mb == 0) && b >= 0 && mb >= 0 && r->max_backoff_ms < r->backoff_ms) {
        char bs[32], ms[32];
        saga_duration_format(r->backoff_ms, bs, sizeof bs);
        saga_duration_format(r->max_backoff_ms, ms, sizeof ms);
        problem(p, path,
                "max_backoff %s (from %s) is shorter than backoff %s (from %s); "
                "max_backoff caps the delay, so it must be at least backoff",
                ms, from->max_backoff, bs, from->backoff);
    }
}

/* Reference checking: which steps may a step's input name? */
typedef struct ref_check {
    const saga_definition *def;
    int step;
    saga_def_problems *p;
} ref_check;

static int seg_is(const saga_ref_seg *seg, const char *word)
{
    return seg->key != NULL && seg->key_len == strlen(word) &&
           memcmp(seg->key, word, seg->key_len) == 0;
}

static int check_ref(const char *path, size_t len, const char *where, void *arg)
{
    ref_check *rc = arg;
    saga_ref_seg seg[3];
    char why[160];
    int n, idx = -1, plen = (int)len;

    if (path == NULL) {
        rule(rc->p, where, "unterminated \"${\" (expected \"${...}\")");
        return 0;
    }
    n = saga_template_parse_ref(path, len, seg, 3, why, sizeof why);
    if (n < 0) {
        rule(rc->p, where, "\"${%.*s}\" is malformed: %s", plen, path, why);
        return 0;
    }
    if (seg_is(&seg[0], "input"))
        return 0;
    if (seg_is(&seg[0], "saga")) {
        if (n == 2 && (seg_is(&seg[1], "id") || seg_is(&seg[1], "name") ||
                       seg_is(&seg[1], "version")))
            return 0;
        problem(rc->p, where,
                "\"${%.*s}\": saga has only id, name and version (expected ${saga.id}, "
                "${saga.name} or ${saga.version})",
                plen, path);
        return 0;
    }
    if (!seg_is(&seg[0], "steps")) {
        problem(rc->p, where,
                "\"${%.*s}\" must start with input, steps.NAME.output or saga (id, name, "
                "version)",
                plen, path);
        return 0;
    }
    if (n < 2 || seg[1].key == NULL) {
        problem(rc->p, where, "\"${%.*s}\": expected steps.NAME.output, NAME a step",
                plen, path);
        return 0;
    }
    for (int i = 0; i < rc->def->nsteps && idx < 0; i++) {
        const char *name = rc->def->steps[i].name;
        if (name != NULL && strlen(name) == seg[1].key_len &&
            memcmp(name, seg[1].key, seg[1].key_len) == 0)
            idx = i;
    }
    if (idx < 0)
        problem(rc->p, where, "\"${%.*s}\" names unknown step \"%.*s\"", plen, path,
                (int)seg[1].key_len, seg[1].key);
    else if (idx >= rc->def->steps[rc->step].stage_first && idx < rc->step)
        problem(rc->p, where,
                "\"${%.*s}\" names step \"%s\", which runs at the same time as this one "
                "(same group)",
                plen, path, rc->def->steps[idx].name);
    else if (idx >= rc->step)
        problem(rc->p, where,
                "\"${%.*s}\" names step \"%s\", which does not run before this one", plen,
                path, rc->def->steps[idx].name);
    else if (n < 3 || !seg_is(&seg[2], "output"))
        problem(rc->p, where,
                "\"${%.*s}\": a step's data is its output (expected steps.%s.output, "
                "steps.%s.output.FIELD or steps.%s.output[N])",
                plen, path, rc->def->steps[idx].name, rc->def->steps[idx].name,
                rc->def->steps[idx].name);
    return 0;
}

/* The policies a step inherits, with where each of their durations was set. */
typedef struct step_defaults {
    saga_retry_policy retry, comp;
    retry_from retry_from, comp_from;
    int64_t timeout_ms;
} step_defaults;

static void parse_step(json_t *s, int i, saga_definition *def, const step_defaults *dflt,
                       saga_def_problems *p)
{
    static const char *const keys[] = {
        "name",  "service",     "action", "compensation",
        "input", "timeout",     "retry",  "compensation_retry",
        "pivot", "description", "group",  NULL};
    saga_step_def *st = &def->steps[i];
    retry_from rfrom = dflt->retry_from, cfrom = dflt->comp_from;
    char where[64], path[96];
    json_t *v;

    snprintf(where, sizeof where, "steps[%d]", i);
    st->retry = dflt->retry;
    st->compensation_retry = dflt->comp;
    st->timeout_ms = dflt->timeout_ms;
    if (!json_is_object(s)) {
        problem(p, where, "found %s, expected a step object", type_name(s));
        return;
    }
    check_keys(s, where, keys, NULL, p);
    st->name = get_string(s, "name", where, 1, 1, p);
    if (st->name != NULL && strchr(st->name, '.') != NULL) {
        snprintf(path, sizeof path, "%s.name", where);
        rule(p, path,
             "\"%s\": a step name cannot contain '.', because references such as "
             "${steps.NAME.output} split on '.' and could never name this step",
             st->name);
    }
    st->service = get_string(s, "service", where, 1, 1, p);
    st->action = get_string(s, "action", where, 1, 1, p);
    v = json_object_get(s, "compensation");
    if (v != NULL && !json_is_null(v))
        st->compensation = get_string(s, "compensation", where, 0, 1, p);
    v = json_object_get(s, "input");
    snprintf(path, sizeof path, "%s.input", where);
    if (v != NULL && !json_is_object(v))
        problem(p, path, "found %s, expected an object", type_name(v));
    else
        st->input = v != NULL ? json_incref(v) : json_object();
    get_duration(s, "timeout", where, &st->timeout_ms, p);
    get_retry(s, "retry", where, &st->retry, &rfrom, p);
    get_retry(s, "compensation_retry", where, &st->compensation_retry, &cfrom, p);
    v = json_object_get(s, "pivot");
    snprintf(path, sizeof path, "%s.pivot", where);
    if (v != NULL && !json_is_boolean(v))
        problem(p, path, "found %s, expected true or false", type_name(v));
    else if (v != NULL)
        st->pivot = json_is_true(v);
    v = json_object_get(s, "description");
    snprintf(path, sizeof path, "%s.description", where);
    if (v != NULL && !json_is_string(v))
        problem(p, path, "found %s, expected a string", type_name(v));
    st->group = get_string(s, "group", where, 0, 1, p);
}

/* The rules that need every step parsed: names, the pivot, groups and
 * compensations. */
static void check_steps(saga_definition *def, json_t *steps, saga_def_problems *p)
{
    int first_pivot = -1;

    for (int i = 0; i < def->nsteps; i++) {
        saga_step_def *st = &def->steps[i];
        char where[64], path[96];
        snprintf(where, sizeof where, "steps[%d]", i);
        for (int j = 0; j < i && st->name; j++)
            if (def->steps[j].name && strcmp(def->steps[j].name, st->name) == 0)
                problem(p, where, "duplicate step name \"%s\" (also steps[%d])", st->name,
                        j);
        if (st->pivot && first_pivot >= 0) {
            snprintf(path, sizeof path, "%s.pivot", where);
            rule(p, path,
                 "a second pivot (the first is steps[%d]): a saga has one point of no "
                 "return, and every step after it is forward-only already (remove "
                 "\"pivot\" here)",
                 first_pivot);
        } else if (st->pivot) {
            first_pivot = i;
        }
        st->forward_only = first_pivot >= 0;
        st->irreversible =
            json_object_get(json_array_get(steps, (size_t)i), "compensation") == NULL;
        if (st->compensation != NULL && st->forward_only) {
            snprintf(path, sizeof path, "%s.compensation", where);
            if (st->pivot)
                rule(p, path,
                     "\"%s\" would never run: a pivot is never compensated (a definite "
                     "failure of the pivot means it took no effect); remove it",
                     st->compensation);
            else
                rule(p, path,
                     "\"%s\" would never run: steps after the pivot (steps[%d]) are "
                     "retried until they succeed and never compensated; remove it",
                     st->compensation, first_pivot);
        }
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
                    problem(p, where,
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
        int members = 0;

        snprintf(where, sizeof where, "steps[%d].input", i);
        if (st->input != NULL)
            saga_template_refs(st->input, where, check_ref, &rc);
        snprintf(where, sizeof where, "steps[%d]", i);
        for (int j = 0; j < def->nsteps && st->group != NULL; j++)
            if (def->steps[j].group != NULL &&
                strcmp(def->steps[j].group, st->group) == 0)
                members++;
        if (members == 1) {
            char path[96];
            snprintf(path, sizeof path, "%s.group", where);
            rule(p, path,
                 "group \"%s\" has only this step: a group runs adjacent steps in "
                 "parallel, so it needs two or more (remove \"group\", or put the "
                 "steps that run with this one next to it in the same group)",
                 st->group);
        }
        if (!json_is_object(s) || json_object_get(s, "compensation") != NULL ||
            st->forward_only)
            continue;
        /* A member of a group can be given up while it is in flight: when
         * another member fails, the engine compensates and ignores its late
         * reply. An irreversible step must never be given up, so every
         * member must say how it is undone, even in the last group. */
        if (st->stage_last > st->stage_first)
            rule(p, where,
                 "step \"%s\" is in parallel group \"%s\" but has no compensation: "
                 "if another step of the group fails while this one is in flight, "
                 "this one is given up and the steps before it are undone, which "
                 "must never happen to an irreversible step (add \"compensation\", "
                 "or \"compensation\": null if there is nothing to undo)",
                 st->name ? st->name : "?", st->group);
        /* A step that later steps can still undo needs a compensation,
         * unless the author says there is nothing to undo (null). */
        else if (st->stage_last < def->nsteps - 1)
            problem(p, where,
                    "step \"%s\" has no compensation, but later steps can fail and "
                    "undo it (add \"compensation\", or \"compensation\": null if there "
                    "is nothing to undo)",
                    st->name ? st->name : "?");
    }
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
        problem(p, "$", "found %s, expected a definition object",
                body ? type_name(body) : "nothing");
        return SAGA_EDEF;
    }
    def = calloc(1, sizeof *def);
    if (def == NULL)
        return SAGA_ENOMEM;
    def->body = json_incref(body);
    if (!p->stored) {
        /* Measured as stored (PostgreSQL's jsonb text, which the limit's
         * trigger counts): a file's own indentation does not count. */
        int64_t size = (int64_t)json_dumpb(body, NULL, 0, 0), max = max_bytes_of(p);
        string_walk w = {.path = "", .p = p};
        char n1[32], n2[32];
        if (size > max)
            problem(p, "$",
                    "the definition is %s bytes (its JSON text as stored); the limit is "
                    "%s (saga.limits max_definition_bytes)",
                    bytes_text(size, n1, sizeof n1), bytes_text(max, n2, sizeof n2));
        long_strings(&w, 0, body);
    }
    check_keys(body, "$", keys, "version", p);
    /* Versions are not written by hand: the store numbers content. */
    if (json_object_get(body, "version") != NULL)
        problem(p, "version",
                "a definition does not carry its version: sagactl defs deploy (and "
                "sagad, for its folder) assign one, the next number for changed "
                "content; remove this key");
    v = json_object_get(body, "$schema");
    if (v != NULL && !json_is_string(v))
        rule(p, "$schema", "found %s, expected a string (a JSON schema's URL)",
             type_name(v));
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
            check_keys(v, "defaults", dkeys, NULL, p);
            get_duration(v, "timeout", "defaults", &dflt.timeout_ms, p);
            get_retry(v, "retry", "defaults", &dflt.retry, &dflt.retry_from, p);
            get_retry(v, "compensation_retry", "defaults", &dflt.comp, &dflt.comp_from,
                      p);
        }
    }
    steps = json_object_get(body, "steps");
    if (steps == NULL) {
        problem(p, "steps", "missing (expected a non-empty array of steps)");
    } else if (!json_is_array(steps) || json_array_size(steps) == 0) {
        problem(p, "steps", "found %s, expected a non-empty array of steps",
                json_is_array(steps) ? "an empty array" : type_name(steps));
    } else if (json_array_size(steps) > 1000) {
        problem(p, "steps", "found %zu steps; at most 1000 are allowed",
                json_array_size(steps));
    } else {
        def->nsteps = (int)json_array_size(steps);
        def->steps = calloc((size_t)def->nsteps, sizeof *def->steps);
        if (def->steps == NULL) {
            saga_definition_free(def);
            return SAGA_ENOMEM;
        }
        for (int i = 0; i < def->nsteps; i++)
            parse_step(json_array_get(steps, (size_t)i), i, def, &dflt, p);
        check_steps(def, steps, p);
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
    /* Indentation makes a file a few times larger than what is stored,
     * never sixteen: past that it is not read into memory at all. */
    int64_t most = 16 * max_bytes_of(problems);
    int rc;

    *out = NULL;
    if (f == NULL) {
        problem(problems, path, "cannot open: %s", strerror(errno));
        return SAGA_EIO;
    }
    for (;;) {
        if ((int64_t)len > most) {
            char n1[32], n2[32];
            free(buf);
            fclose(f);
            problem(problems, "$",
                    "the file is over %s bytes, 16 times the limit of %s "
                    "(saga.limits max_definition_bytes); not read",
                    bytes_text(most, n1, sizeof n1),
                    bytes_text(max_bytes_of(problems), n2, sizeof n2));
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
